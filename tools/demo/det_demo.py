"""Detect objects in an image with a trained detector (a DynaMixer RetinaNet or Mask R-CNN config of this project,
or any mmdet config) and write the image with the detections drawn on it.

    python tools/demo/det_demo.py IMAGE CONFIG CHECKPOINT [--out-file result.png] [--score-thr 0.3] [--device DEVICE]

A thin tool over mmdet's ``DetInferencer`` (the config's test pipeline, the class names saved in the checkpoint)
and its ``DetLocalVisualizer`` (boxes, and masks for instance segmentation models).
"""
import argparse

import mmcv

from mmdynamixer.cli import add_device_argument, check_inputs


def parse_args():
    parser = argparse.ArgumentParser(description='Detect objects in an image and draw them')
    parser.add_argument('image', help='image file')
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help='checkpoint file (as tools/train.py saves it)')
    parser.add_argument('--out-file', default='result.png', help='image to write (default result.png)')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='print and draw the detections scoring above this (default 0.3)')
    add_device_argument(parser)
    args = parser.parse_args()
    if not 0 <= args.score_thr <= 1:
        parser.error(f'--score-thr must be in [0, 1], got {args.score_thr}')
    return parser, args


def main():
    parser, args = parse_args()
    check_inputs(parser, image=args.image, config=args.config, checkpoint=args.checkpoint)

    from mmdet.apis import DetInferencer

    from mmdynamixer.engine import mmengine_checkpoint_loading

    with mmengine_checkpoint_loading():  # weights-only loading of an mmengine checkpoint
        inferencer = DetInferencer(args.config, args.checkpoint, device=args.device, show_progress=False)
    result = inferencer(args.image, return_vis=True, return_datasamples=True, pred_score_thr=args.score_thr)
    instances = result['predictions'][0].pred_instances.cpu()
    shown = instances[instances.scores > args.score_thr]  # what the visualizer draws
    classes = inferencer.model.dataset_meta['classes']
    print(f'{args.image}: {len(shown)} of {len(instances)} detections score above {args.score_thr}')
    for index, (label, score, box) in enumerate(zip(shown.labels.tolist(), shown.scores.tolist(),
                                                    shown.bboxes.tolist())):
        corners = ', '.join(f'{v:.1f}' for v in box)
        mask = f', mask {int(shown.masks[index].sum())} px' if 'masks' in shown else ''
        print(f'  {classes[label]} (label {label}): {score:.4f}, box [{corners}]{mask}')

    mmcv.imwrite(mmcv.rgb2bgr(result['visualization'][0]), args.out_file)
    print(f'wrote {args.out_file}')


if __name__ == '__main__':
    main()
