"""Segment an image with a trained segmentor (a DynaMixer UperNet or Semantic FPN config of this project, or any
mmseg config) and write the image blended with the predicted classes' colours.

    python tools/demo/seg_demo.py IMAGE CONFIG CHECKPOINT [--out-file result.png] [--opacity 0.5] [--device DEVICE]

A thin tool over mmseg's ``MMSegInferencer`` (the config's test pipeline, the class names and palette saved in
the checkpoint) and its ``SegLocalVisualizer``.
"""
import argparse

import mmcv
import numpy as np

from mmdynamixer.cli import add_device_argument, check_inputs


def parse_args():
    parser = argparse.ArgumentParser(description='Segment an image and draw the classes')
    parser.add_argument('image', help='image file')
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help='checkpoint file (as tools/train.py saves it)')
    parser.add_argument('--out-file', default='result.png', help='image to write (default result.png)')
    parser.add_argument('--opacity', type=float, default=0.5,
                        help='weight of the class colours against the image, in (0, 1] (default 0.5)')
    parser.add_argument('--with-labels', action='store_true', help='also write the class names on the image')
    add_device_argument(parser)
    args = parser.parse_args()
    if not 0 < args.opacity <= 1:
        parser.error(f'--opacity must be in (0, 1], got {args.opacity}')
    return parser, args


def main():
    parser, args = parse_args()
    check_inputs(parser, image=args.image, config=args.config, checkpoint=args.checkpoint)

    from mmseg.apis import MMSegInferencer

    from mmdynamixer.engine import mmengine_checkpoint_loading

    with mmengine_checkpoint_loading():  # weights-only loading of an mmengine checkpoint
        inferencer = MMSegInferencer(args.config, args.checkpoint, device=args.device)
    inferencer.show_progress = False  # its bar would run into the printed classes
    result = inferencer(args.image, return_vis=True, opacity=args.opacity, with_labels=args.with_labels)
    label_map = result['predictions']  # the image's height x width, one class index per pixel
    classes = inferencer.model.dataset_meta['classes']
    labels, counts = np.unique(label_map, return_counts=True)
    print(f'{args.image}: {len(labels)} of {len(classes)} classes in {label_map.shape[1]} x {label_map.shape[0]} '
          f'pixels')
    for count, label in sorted(zip(counts.tolist(), labels.tolist()), reverse=True):
        print(f'  {classes[label]} (label {label}): {100 * count / label_map.size:.2f} %')

    mmcv.imwrite(mmcv.rgb2bgr(result['visualization']), args.out_file)
    print(f'wrote {args.out_file}')


if __name__ == '__main__':
    main()
