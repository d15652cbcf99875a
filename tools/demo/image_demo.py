"""Classify an image with a trained classifier (a DynaMixer config of this project, or any mmpretrain config) and
write the image with its prediction drawn on it.

    python tools/demo/image_demo.py IMAGE CONFIG CHECKPOINT [--topk 5] [--out-file result.png] [--device DEVICE]

A thin tool over mmpretrain's ``ImageClassificationInferencer`` (the config's test pipeline and data
preprocessor, the class names saved in the checkpoint) and its ``UniversalVisualizer``.
"""
import argparse

import mmcv

from mmdynamixer.cli import add_device_argument, check_inputs

# Images with a shorter side below this (the digits demo's are 56 px) are enlarged for drawing, so the label fits.
MIN_DRAWN_SIDE = 224


def parse_args():
    parser = argparse.ArgumentParser(description='Classify an image and draw the prediction')
    parser.add_argument('image', help='image file')
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help='checkpoint file (as tools/train.py saves it)')
    parser.add_argument('--topk', type=int, default=5, help='how many classes to print (default 5)')
    parser.add_argument('--out-file', default='result.png', help='image to write (default result.png)')
    add_device_argument(parser)
    args = parser.parse_args()
    if args.topk < 1:
        parser.error(f'--topk must be at least 1, got {args.topk}')
    return parser, args


def main():
    parser, args = parse_args()
    from mmpretrain import ImageClassificationInferencer
    from mmpretrain.visualization import UniversalVisualizer

    from mmdynamixer.engine import mmengine_checkpoint_loading

    image = mmcv.bgr2rgb(check_inputs(parser, image=args.image, config=args.config, checkpoint=args.checkpoint))

    with mmengine_checkpoint_loading():  # weights-only loading of an mmengine checkpoint
        inferencer = ImageClassificationInferencer(args.config, pretrained=args.checkpoint, device=args.device)
    # The inferencer's own steps (its __call__ adds a progress bar that would run into the printed classes).
    prediction = inferencer.forward(next(inferencer.preprocess([args.image])))[0]
    scores = prediction.pred_score
    classes = inferencer.classes
    top_scores, top_labels = scores.topk(min(args.topk, scores.numel()))
    print(f'{args.image}: top {len(top_labels)} of {scores.numel()} classes')
    for rank, (score, label) in enumerate(zip(top_scores.tolist(), top_labels.tolist()), 1):
        name = f'{classes[label]!s} (label {label})' if classes else f'label {label}'
        print(f'  {rank}. {name}: {score:.4f}')

    resize = MIN_DRAWN_SIDE if min(image.shape[:2]) < MIN_DRAWN_SIDE else None
    UniversalVisualizer().visualize_cls(image, prediction, classes=classes, draw_gt=False, resize=resize,
                                        out_file=args.out_file)
    print(f'wrote {args.out_file}')


if __name__ == '__main__':
    main()
