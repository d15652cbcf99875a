"""Class activation map of a DynaMixer classifier: where in the image the evidence for a class lies.

    python tools/visualization/vis_cam.py IMAGE CONFIG CHECKPOINT [--method gradcam] [--target-layers NAME ...]
        [--target-category K] [--out-file cam.png] [--device DEVICE]

A thin tool over mmpretrain's inferencer (the config's test pipeline and data preprocessor) and
pytorch-grad-cam through :mod:`mmdynamixer.integrations.grad_cam` (which gets DynaMixer's channels-last maps
right, unlike mmpretrain's ``vis_cam.py``). Writes the model's input beside it with the map laid over it.
``--device`` defaults to cuda when available, else cpu.
"""
import argparse

from mmdynamixer.cli import add_device_argument, check_inputs
from mmdynamixer.integrations import grad_cam


def parse_args():
    parser = argparse.ArgumentParser(description='Class activation map of a DynaMixer classifier')
    parser.add_argument('image', help='image file')
    parser.add_argument('config', help='classification config file')
    parser.add_argument('checkpoint', help='checkpoint file (as tools/train.py saves it)')
    parser.add_argument('--method', default='gradcam', choices=grad_cam.METHODS,
                        help="pytorch-grad-cam's method (default gradcam)")
    parser.add_argument('--target-layers', nargs='+', default=[grad_cam.DEFAULT_TARGET_LAYER],
                        help=f'modules of one stage whose maps are weighted (default {grad_cam.DEFAULT_TARGET_LAYER}, '
                             'the final norm), e.g. backbone.network.0.0 (the first layer), backbone.patch_embed')
    parser.add_argument('--target-category', type=int, help='class to explain (default: the predicted one)')
    parser.add_argument('--out-file', default='cam.png', help='image to write (default cam.png)')
    add_device_argument(parser)
    args = parser.parse_args()
    return parser, args


def main():
    parser, args = parse_args()
    import mmcv
    from mmpretrain import ImageClassificationInferencer

    from mmdynamixer.engine import mmengine_checkpoint_loading

    check_inputs(parser, image=args.image, config=args.config, checkpoint=args.checkpoint)
    with mmengine_checkpoint_loading():  # weights-only loading of an mmengine checkpoint
        inferencer = ImageClassificationInferencer(args.config, pretrained=args.checkpoint, device=args.device)
    model = inferencer.model
    batch = next(inferencer.preprocess([args.image]))
    inputs = model.data_preprocessor(batch, False)['inputs']
    try:
        grayscale, category, scores = grad_cam.class_activation_map(model, inputs, args.target_layers,
                                                                    args.method, args.target_category)
    except ValueError as error:
        parser.error(str(error))

    classes = inferencer.classes
    name = (lambda label: f'{classes[label]} (label {label})' if classes else f'label {label}')
    predicted = int(scores.argmax())
    print(f'{args.image}: predicted {name(predicted)}, score {scores[predicted]:.4f}')
    explained = ('the same for every class: it uses no gradient' if args.method in grad_cam.CLASS_AGNOSTIC
                 else f'for {name(category)} (score {scores[category]:.4f})')
    print(f'{args.method} {explained} at {", ".join(args.target_layers)}')
    # The model's input as the test pipeline left it, in the loader's (BGR) channel order.
    image_bgr = batch['inputs'][0].permute(1, 2, 0).numpy()
    mmcv.imwrite(grad_cam.draw(image_bgr, grayscale), args.out_file)
    print(f'wrote {args.out_file}')


if __name__ == '__main__':
    main()
