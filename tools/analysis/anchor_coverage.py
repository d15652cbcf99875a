"""How well a detection config's anchors fit the boxes of a COCO annotation file, as the head's MaxIoUAssigner
sees them: for each ground-truth box, the best IoU over all anchors of its image.

    python tools/analysis/anchor_coverage.py CONFIG ANN_FILE [--cfg-options KEY=VALUE ...]
    python tools/analysis/anchor_coverage.py configs/dynamixer/retinanet_dynamixer-tiny_fpn_digit-scenes.py \\
        data/digit_scenes/annotations/instances_train.json

Boxes and images are taken at their stored size (the digit-scenes configs do not resize), padded to the data
preprocessor's ``pad_size_divisor``; the maps are ceil(padded side / stride). Prints the boxes' widths and heights
(5th, 50th, 95th percentiles) and the share of boxes whose best anchor IoU is under the assigner's ``pos_iou_thr``
and ``neg_iou_thr``: such a box is matched to its best anchor only (``min_pos_iou``), while the anchors around it
that overlap it less than ``neg_iou_thr`` are trained as background.
"""
import argparse
import json
import math
from collections import defaultdict

import numpy as np
import torch
from mmengine.config import Config, DictAction


def anchor_head(model_cfg) -> str:
    for name in ('bbox_head', 'rpn_head'):
        if 'anchor_generator' in model_cfg.get(name, {}):
            return name
    raise ValueError(f'the model ({model_cfg.type}) has no bbox_head or rpn_head with an anchor_generator')


def best_anchor_ious(cfg: Config, coco: dict) -> np.ndarray:
    """The best IoU over the anchors of its image, for every box of ``coco`` (a COCO dict), in annotation order."""
    from mmdet.registry import TASK_UTILS
    from mmdet.structures.bbox import bbox_overlaps
    from mmdet.utils import register_all_modules

    register_all_modules()
    generator = TASK_UTILS.build(cfg.model[anchor_head(cfg.model)].anchor_generator)
    divisor = cfg.model.get('data_preprocessor', {}).get('pad_size_divisor', 1)
    boxes = defaultdict(list)
    for annotation in coco['annotations']:
        boxes[annotation['image_id']].append(annotation['bbox'])
    best = []
    for image in coco['images']:
        if not boxes[image['id']]:
            continue
        height, width = (math.ceil(image[side] / divisor) * divisor for side in ('height', 'width'))
        sizes = [(math.ceil(height / stride[1]), math.ceil(width / stride[0])) for stride in generator.strides]
        anchors = torch.cat(generator.grid_priors(sizes, device='cpu'))
        targets = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in boxes[image['id']]], dtype=torch.float32)
        best.append(bbox_overlaps(targets, anchors).max(dim=1).values)
    return torch.cat(best).numpy() if best else np.zeros(0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='a detection config with anchors (RetinaNet, Mask R-CNN, ...)')
    parser.add_argument('ann_file', help='COCO annotations (bbox as x, y, w, h)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config settings')
    args = parser.parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    with open(args.ann_file) as f:
        coco = json.load(f)
    try:
        best = best_anchor_ious(cfg, coco)
    except ValueError as error:
        parser.error(f'{args.config}: {error}')
    if not best.size:
        parser.error(f'{args.ann_file} has no boxes')
    train_cfg = cfg.model.get('train_cfg', {})
    assigner = train_cfg.get('assigner') or train_cfg.get('rpn', {}).get('assigner', {})
    sides = np.array([a['bbox'][2:] for a in coco['annotations']], dtype=float)
    print(f'{best.size} boxes; width {np.percentile(sides[:, 0], [5, 50, 95]).round(1).tolist()}, height '
          f'{np.percentile(sides[:, 1], [5, 50, 95]).round(1).tolist()} px (5th, 50th, 95th percentiles)')
    print(f'best anchor IoU: median {np.median(best):.3f}')
    for key in ('pos_iou_thr', 'neg_iou_thr'):
        if key in assigner:
            print(f'under {key} {assigner[key]}: {100 * (best < assigner[key]).mean():.1f} % of the boxes')


if __name__ == '__main__':
    main()
