"""Does the class activation map find the object? Each held-out image of a classification folder is pasted at
a random place on a larger black canvas; the map of the true class (mmdynamixer.integrations.grad_cam) hits
when its peak lies inside the pasted image. Prints the hit rate and the top-1 on the canvases; draws one example
for each of the first classes.

    python tools/analysis/cam_localization.py CONFIG CHECKPOINT data/digits/val [--size 112 112]
        [--method gradcam] [--target-layers backbone.norm] [--seed 0] [--examples 6]
        [--out-file cam_localization.png] [--device DEVICE]

Chance is the pasted image's share of the canvas (a quarter for 56-pixel digits on 112 x 112 pixels).
``--device`` defaults to cuda when available, else cpu.
"""
import argparse
import os
import os.path as osp

import numpy as np
import torch

from mmdynamixer.cli import add_deprecated_alias, add_device_argument, add_size_argument, check_inputs, square_size
from mmdynamixer.integrations import grad_cam

EXAMPLES_PER_ROW = 3


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='classification config whose test pipeline only loads the image')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('folder', help='held-out images as <folder>/<class>/<image>, classes named as in training')
    add_size_argument(parser, default=(112, 112), help='canvas size in pixels')
    add_deprecated_alias(parser, '--canvas', '--size', 'size', type=square_size('--canvas'))
    parser.add_argument('--method', default='gradcam', choices=grad_cam.METHODS, help='CAM method (default gradcam)')
    parser.add_argument('--target-layers', nargs='+', default=[grad_cam.DEFAULT_TARGET_LAYER],
                        help=f'modules of one stage whose maps are weighted (default {grad_cam.DEFAULT_TARGET_LAYER})')
    parser.add_argument('--seed', type=int, default=0, help='seed of the positions (default 0)')
    parser.add_argument('--examples', type=int, default=6, help='examples drawn, one per class (default 6)')
    parser.add_argument('--out-file', default='cam_localization.png', help='image of the examples')
    add_device_argument(parser)
    args = parser.parse_args()
    if not osp.isdir(args.folder):
        parser.error(f'FOLDER {args.folder!r} is not a folder')
    return parser, args


def main():
    parser, args = parse_args()
    import mmcv
    from mmengine.config import Config
    from mmpretrain import ImageClassificationInferencer

    from mmdynamixer.engine import mmengine_checkpoint_loading

    check_inputs(parser, config=args.config, checkpoint=args.checkpoint)
    with mmengine_checkpoint_loading():  # weights-only loading of an mmengine checkpoint
        inferencer = ImageClassificationInferencer(args.config, pretrained=args.checkpoint, device=args.device)
    resizing = [t['type'] for t in Config.fromfile(args.config).test_dataloader.dataset.pipeline
                if not t['type'].endswith(('LoadImageFromFile', 'PackInputs'))]
    if resizing:
        parser.error(f'the test pipeline of {args.config} transforms the image ({", ".join(resizing)}): the '
                     f'canvases go to the model as they are, so use a config whose test pipeline only loads')
    model, classes = inferencer.model, list(inferencer.classes or [])
    samples = [(osp.join(args.folder, name, image), label) for label, name in enumerate(classes)
               if osp.isdir(osp.join(args.folder, name)) for image in sorted(os.listdir(osp.join(args.folder, name)))]
    if not samples:
        parser.error(f'no images under {args.folder}/<class>/ for the checkpoint\'s classes {classes}')
    canvas_height, canvas_width = args.size
    rng = np.random.default_rng(args.seed)
    hits = correct = chance = 0
    examples, drawn_labels = [], set()
    for path, label in samples:
        image = mmcv.imread(path)  # BGR, as the test pipeline loads it
        if image is None:
            parser.error(f'{path} is not an image mmcv can read')
        height, width = image.shape[:2]
        if height > canvas_height or width > canvas_width:
            parser.error(f'the canvas ({canvas_height} x {canvas_width}, --size) is smaller than {path} '
                         f'({height} x {width})')
        top, left = rng.integers(0, canvas_height - height + 1), rng.integers(0, canvas_width - width + 1)
        canvas = np.zeros((canvas_height, canvas_width, 3), np.uint8)
        canvas[top:top + height, left:left + width] = image
        batch = {'inputs': [torch.from_numpy(canvas).permute(2, 0, 1).contiguous()], 'data_samples': None}
        inputs = model.data_preprocessor(batch, False)['inputs']
        try:
            grayscale, _, scores = grad_cam.class_activation_map(model, inputs, args.target_layers, args.method, label)
        except ValueError as error:
            parser.error(str(error))
        row, col = np.unravel_index(grayscale.argmax(), grayscale.shape)
        hit = top <= row < top + height and left <= col < left + width
        hits += hit
        correct += int(scores.argmax()) == label
        chance += height * width / (canvas_height * canvas_width)
        if len(examples) < args.examples and label not in drawn_labels:  # one example per class
            drawn_labels.add(label)
            boxed = mmcv.imshow_bboxes(canvas.copy(), np.array([[left, top, left + width - 1, top + height - 1]]),
                                       colors='green' if hit else 'red', thickness=1, show=False)
            examples.append(grad_cam.draw(boxed, grayscale))
    print(f'{len(samples)} images of {args.folder} on {canvas_height} x {canvas_width} canvases (seed {args.seed}), '
          f'{args.method} at {", ".join(args.target_layers)}:')
    print(f'  peak of the true class\'s map inside the image: {100 * hits / len(samples):.1f} % '
          f'(chance {100 * chance / len(samples):.1f} %)')
    print(f'  top-1 on the canvases: {100 * correct / len(samples):.1f} %')
    if examples:
        examples += [np.zeros_like(examples[0])] * (-len(examples) % EXAMPLES_PER_ROW)
        rows = [np.concatenate(examples[i:i + EXAMPLES_PER_ROW], axis=1)
                for i in range(0, len(examples), EXAMPLES_PER_ROW)]
        mmcv.imwrite(np.concatenate(rows, axis=0), args.out_file)
        print(f'wrote {args.out_file} (canvas and the true class\'s map; the box green where the peak hits)')


if __name__ == '__main__':
    main()
