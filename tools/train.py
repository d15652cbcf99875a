"""Train from an mmpretrain, mmdet or mmsegmentation config: the toolboxes' standard ``tools/train.py``.

The config's ``default_scope`` picks the toolbox and its ``runner_type`` the Runner (the project's configs name
``DynaMixerRunner``, so mmpretrain's, mmdet's and mmseg's own scripts, and ``mim train``, behave the same).
"""
import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner


def parse_args():
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and checkpoints')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint, or from the latest one in the work dir if none is given')
    parser.add_argument('--amp', action='store_true', help='automatic mixed-precision training')
    parser.add_argument('--no-validate', action='store_true', help='do not evaluate during training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate linearly by the actual total batch size over the config\'s '
                             'auto_scale_lr.base_batch_size')
    parser.add_argument('--no-pin-memory', action='store_true', help='pin_memory=False in every dataloader')
    parser.add_argument('--no-persistent-workers', action='store_true',
                        help='persistent_workers=False in every dataloader')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings in the config, key=value, e.g. train_dataloader.batch_size=64')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def merge_args(cfg: Config, args) -> Config:
    """Apply the command line to the config, as the toolboxes' scripts do."""
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    if args.auto_scale_lr:
        if not cfg.get('auto_scale_lr', {}).get('base_batch_size'):
            raise ValueError(f'--auto-scale-lr: {args.config} has no auto_scale_lr.base_batch_size (the total batch '
                             f'size its learning rate is for); set it with --cfg-options auto_scale_lr.base_batch_size=N')
        cfg.auto_scale_lr.enable = True
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(loader) is None:
            continue
        if args.no_pin_memory:
            cfg[loader].pin_memory = False
        if args.no_persistent_workers:
            cfg[loader].persistent_workers = False
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    return cfg


def main():
    args = parse_args()
    cfg = merge_args(Config.fromfile(args.config), args)
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    runner.train()


if __name__ == '__main__':
    main()
