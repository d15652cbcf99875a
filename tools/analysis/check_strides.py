"""Check a dense config's strides before training: a DynaMixer backbone's output strides against the FPN reading
them, the anchor generators' strides, the RoI extractors' ``featmap_strides`` and the segmentation heads'
``feature_strides`` (and the neck's ``in_channels`` against the backbone's channels).

    python tools/analysis/check_strides.py CONFIG [--cfg-options KEY=VALUE ...]
    python tools/analysis/check_strides.py configs/dynamixer/retinanet_dynamixer-s_fpn_1x_coco.py

Prints the strides in pixels along the config and exits 0 when they agree; otherwise names each disagreement
and what to set, and exits 1. DynaMixerRunner (``runner_type = 'DynaMixerRunner'``) refuses such a config the
same way before building anything; a config that does not name it (e.g. one of mmdet's with our backbone dropped
in) trains without a word, so run this on it. Configs without a DynaMixer backbone are not checked.
"""
import argparse
import sys

from mmengine.config import Config, DictAction

from mmdynamixer.engine.checks import check_neck_in_channels, stride_report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='a detection or segmentation config (mmdet, mmseg)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config settings')
    args = parser.parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)

    rows, problems = stride_report(cfg)
    if not rows:
        print(f'{args.config}: the backbone ({cfg.get("model", {}).get("backbone", {}).get("type")}) is not '
              f'DynaMixer: nothing checked')
        return 0
    print(f'{args.config}: strides in pixels')
    width = max(len(where) for where, _ in rows)
    for where, strides in rows:
        print(f'  {where:<{width}}  {strides}')
    try:
        check_neck_in_channels(cfg)
    except ValueError as error:
        problems.insert(0, str(error))
    if problems:
        print('\n'.join(['', 'These disagree:', *(f'- {problem}' for problem in problems),
                         "The shipped dense configs have them right: inherit one, e.g. _base_ = [__import__("
                         "'mmdynamixer').config_file('dynamixer/retinanet_dynamixer-s_fpn_1x_coco.py')]"]),
              file=sys.stderr)
        return 1
    print('OK: the neck reads one map per stride and every head is told the strides of the maps it runs on')
    return 0


if __name__ == '__main__':
    sys.exit(main())
