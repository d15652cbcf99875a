"""Throughput of the recipe's training input pipeline: images/s per CPU core, and epoch-start costs.

    python tools/analysis/benchmark_pipeline.py [--config configs/dynamixer/dynamixer-s_8xb256_in1k.py]
        [--images 1024] [--batch 256] [--workers 1 2] [--epochs 3] [--size 375 500] [--out-file out.json]
        [--cfg-options train_dataloader.collate_fn.type=pseudo_collate]

Writes --images JPEGs of ImageNet-like size and weight (--size 375 500: height 375, width 500; quality 90; about
110 KiB each, the mean of ImageNet's train files) to a temporary class-folder tree, then measures, with the config's
train pipeline, dataloader settings and seed (only the dataset's folder is swapped in):

1. each transform in this process, CPU ms per image (OpenCV single-threaded, as the config's env_cfg
   sets it for training): read + decode, RandomResizedCrop, flip, RandAugment, RandomErasing, PackInputs;
2. the train dataloader with each --workers count, epoch by epoch:
   - images/s on the wall clock, steady part (the batches after every worker's first);
   - images per worker CPU-second: the epoch's images over the CPU time of its workers (the whole
     worker: pipeline, collation, hand-over through shared memory), i.e. images/s per fully used
     core; CPU time barely moves with other load, so this is the figure to size workers with;
   - the main process's CPU time per batch (receiving batches from the workers);
   - wall time to an epoch's first batch with fresh workers (persistent_workers=False, the recipe's)
     and with persistent workers reused from the previous epoch: either way one worker has to make a
     whole batch first; and the wall time of ``iter(loader)``, which forks fresh workers (one by one,
     in the main process) or hands reused ones the new epoch: what non-persistent workers add;
3. the data preprocessor on one batch, CPU ms with 1 torch thread: stack and normalise, and on top of
   that each of the model's batch augments alone (train_cfg.augments: Mixup, CutMix; the recipe draws
   one of them per batch). In GPU training all of this runs on the GPU.

Files are read from the page cache: disk throughput is not part of the measurement. Wall-clock figures
need idle cores (the load average before and after is printed): N workers use N cores plus the main
process's share.
"""
import argparse
import copy
import io
import json
import math
import os
import resource
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from mmengine.config import Config, DictAction
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from mmengine.utils.dl_utils import set_multi_processing
from PIL import Image

from mmdynamixer.cli import add_deprecated_alias, add_size_argument

REPO = Path(__file__).resolve().parents[2]
NUM_CLASSES = 10


def parse_width_by_height(text):
    """The deprecated ``--image-size WIDTHxHEIGHT`` as ``(height, width)``."""
    try:
        width, height = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'image size {text!r} is not WIDTHxHEIGHT, e.g. 500x375') from None
    return height, width


def write_images(root: Path, count: int, size, quality: int) -> float:
    """``count`` JPEGs of ``size`` (height, width) in class folders under ``root/train``; returns their mean size
    in KiB.

    Smooth random content (bicubic up-sampling of a 96-pixel-wide random image) plus pixel noise
    compresses like a photograph: about 110 KiB at 500 x 375 and quality 90.
    """
    rng = np.random.default_rng(0)
    height, width = size
    total = 0
    for i in range(count):
        folder = root / 'train' / f'n{i % NUM_CLASSES:08d}'
        folder.mkdir(parents=True, exist_ok=True)
        coarse = Image.fromarray(rng.integers(0, 256, (72, 96, 3), dtype=np.uint8))
        pixels = np.asarray(coarse.resize((width, height), Image.BICUBIC), dtype=np.float32)
        pixels += rng.normal(0, 14, pixels.shape)
        buffer = io.BytesIO()
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buffer, 'JPEG', quality=quality)
        (folder / f'{i:06d}.JPEG').write_bytes(buffer.getvalue())
        total += buffer.tell()
    return total / count / 1024


def transform_name(cfg: dict) -> str:
    if cfg['type'] == 'RandomChoice':
        inner = sorted({t['type'] for choice in cfg['transforms'] for t in choice})
        return f"RandomChoice({', '.join(inner)})"
    return cfg['type']


def time_transforms(pipeline, files, repeat: int):
    """Median CPU ms per image of each transform over ``repeat`` passes of ``files``."""
    from mmpretrain.registry import TRANSFORMS
    transforms = [(transform_name(cfg), TRANSFORMS.build(cfg)) for cfg in pipeline]
    totals = {name: [] for name, _ in transforms}
    for _ in range(repeat):
        spent = dict.fromkeys(totals, 0.0)
        for path in files:
            results = dict(img_path=str(path))
            for name, transform in transforms:
                start = time.thread_time()
                results = transform(results)
                spent[name] += time.thread_time() - start
        for name, seconds in spent.items():
            totals[name].append(seconds * 1e3 / len(files))
    return {name: statistics.median(values) for name, values in totals.items()}


def cpu_seconds(who) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def run_epoch(loader):
    """Wall seconds of ``iter(loader)`` and from it to each batch of one epoch, the batches' sizes, and the
    CPU seconds of this process and of the workers it reaped (non-persistent workers are joined at the
    epoch's end)."""
    main_cpu, workers_cpu = cpu_seconds(resource.RUSAGE_SELF), cpu_seconds(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    batches = iter(loader)  # starts (forks) fresh workers, or hands reused ones the new epoch
    iter_s = time.perf_counter() - start
    arrivals = [(time.perf_counter() - start, len(batch['inputs'])) for batch in batches]
    return dict(times=[t for t, _ in arrivals], sizes=[n for _, n in arrivals], iter_s=iter_s,
                main_cpu=cpu_seconds(resource.RUSAGE_SELF) - main_cpu,
                workers_cpu=cpu_seconds(resource.RUSAGE_CHILDREN) - workers_cpu)


def time_loader(loader_cfg, seed, epochs: int):
    """Images/s, images per worker CPU-second and first-batch times of fresh and reused workers."""
    workers = loader_cfg['num_workers']
    steady, per_cpu, main_ms, fresh, reused, start_fresh, start_reused = [], [], [], [], [], [], []
    for persistent in (False, True):
        loader = Runner.build_dataloader(dict(loader_cfg, persistent_workers=persistent), seed=seed)
        for epoch in range(epochs):
            epoch_stats = run_epoch(loader)
            times, sizes = epoch_stats['times'], epoch_stats['sizes']
            reuse = persistent and epoch > 0
            (reused if reuse else fresh).append(times[0])
            (start_reused if reuse else start_fresh).append(epoch_stats['iter_s'])
            # All workers start at once, so their first batches arrive together; the rate is steady after.
            steady.append(sum(sizes[workers:]) / (times[-1] - times[workers - 1]))
            if not persistent:
                per_cpu.append(sum(sizes) / epoch_stats['workers_cpu'])
                main_ms.append(epoch_stats['main_cpu'] * 1e3 / len(sizes))
        del loader
    return dict(workers=workers, img_s=statistics.median(steady), img_s_runs=steady,
                img_per_worker_cpu_s=statistics.median(per_cpu), img_per_worker_cpu_s_runs=per_cpu,
                main_cpu_ms_per_batch=statistics.median(main_ms),
                first_batch_fresh_s=statistics.median(fresh), first_batch_fresh_runs=fresh,
                first_batch_reused_s=statistics.median(reused), first_batch_reused_runs=reused,
                iter_fresh_s=statistics.median(start_fresh), iter_reused_s=statistics.median(start_reused))


def time_preprocessor(cfg, batch, repeat: int):
    """Median CPU ms per batch of the data preprocessor alone and with each batch augment of the model."""
    from mmpretrain.registry import MODELS
    variants = {'normalise': None}
    for augment in cfg.model.get('train_cfg', {}).get('augments', []):
        variants[augment['type']] = dict(augments=[augment])
    result = {}
    for name, augments in variants.items():
        preprocessor = MODELS.build(dict(type='ClsDataPreprocessor', **cfg.data_preprocessor, batch_augments=augments))
        times = []
        for _ in range(repeat):
            start = time.thread_time()
            preprocessor(batch, training=True)
            times.append((time.thread_time() - start) * 1e3)
        result[name] = statistics.median(times)
    return result


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', default=str(REPO / 'configs/dynamixer/dynamixer-s_8xb256_in1k.py'))
    parser.add_argument('--images', type=int, default=1024, help='generated JPEGs (one epoch)')
    parser.add_argument('--batch', type=int, help="images per batch (default: the config's)")
    parser.add_argument('--workers', type=int, nargs='+', default=[1, 2], help='loader worker counts to time')
    parser.add_argument('--epochs', type=int, default=3, help='epochs per loader (fresh and persistent)')
    add_size_argument(parser, default=(375, 500), help='size of the JPEGs')
    add_deprecated_alias(parser, '--image-size', '--size H W', 'size', type=parse_width_by_height)
    parser.add_argument('--quality', type=int, default=90, help='JPEG quality')
    parser.add_argument('--repeat', type=int, default=3, help='passes for the per-transform and preprocessor times')
    parser.add_argument('--out-file', help='also write the results here (JSON)')
    add_deprecated_alias(parser, '--json', '--out-file', 'out_file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override config settings, e.g. train_dataloader.collate_fn.type=pseudo_collate')
    args = parser.parse_args(argv)
    if min(args.workers) < 1:
        parser.error(f'--workers {args.workers}: worker counts must be at least 1')
    if args.epochs < 2:
        parser.error(f'--epochs {args.epochs}: at least 2 are needed (persistent workers are reused from epoch 2)')
    args.cfg = Config.fromfile(args.config)
    args.cfg.merge_from_dict(args.cfg_options)
    args.batch = args.batch or args.cfg.train_dataloader.batch_size
    batches = math.ceil(args.images / args.batch)
    if batches <= max(args.workers):
        # Every worker starts at once; only the batches after each worker's first show the steady rate.
        parser.error(f'{batches} batches per epoch: need more than --workers {max(args.workers)} to see a steady '
                     f'rate; raise --images to at least {(max(args.workers) + 1) * args.batch}')
    return args


def main(argv=None):
    args = parse_args(argv)
    cfg, batch = args.cfg, args.batch
    scope = cfg.get('default_scope', 'mmpretrain')
    DefaultScope.get_instance(f'benchmark_pipeline_{os.getpid()}', scope_name=scope)
    set_multi_processing(**cfg.env_cfg.get('mp_cfg', {}))  # as the Runner does: OpenCV single-threaded
    torch.set_num_threads(1)  # the preprocessor's figures are per core
    # Without CUDA, pin_memory=True only warns: the copy it speeds up is to a GPU.
    warnings.filterwarnings('ignore', message=".*'pin_memory' argument is set as true.*")
    pipeline = cfg.train_dataloader.dataset.pipeline
    loadavg_before = os.getloadavg()

    with tempfile.TemporaryDirectory(prefix='pipeline_bench_') as tmp:
        root = Path(tmp)
        mean_kib = write_images(root, args.images, args.size, args.quality)
        files = sorted((root / 'train').rglob('*.JPEG'))[:min(args.images, 256)]
        transforms = time_transforms(pipeline, files, args.repeat)
        loader_cfg = copy.deepcopy(cfg.train_dataloader.to_dict())
        loader_cfg.update(batch_size=batch, dataset=dict(type='CustomDataset', data_root=str(root),
                                                         data_prefix='train', pipeline=pipeline))
        loaders = [time_loader(dict(loader_cfg, num_workers=w), cfg.get('randomness', {}).get('seed'),
                               args.epochs) for w in args.workers]
        first_batch = next(iter(Runner.build_dataloader(
            dict(loader_cfg, num_workers=0, persistent_workers=False))))
        preprocessor = time_preprocessor(cfg, first_batch, args.repeat)
    loadavg_after = os.getloadavg()

    per_image_ms = sum(transforms.values())
    print(f'{args.images} JPEGs of {args.size[1]} x {args.size[0]} (width x height), quality {args.quality}, mean '
          f'{mean_kib:.0f} KiB; {Path(args.config).name}, batch {batch}; load average {loadavg_before[0]:.2f} '
          f'before, {loadavg_after[0]:.2f} after\n')
    print('| transform | CPU ms / image |')
    print('|---|---:|')
    for name, ms in transforms.items():
        print(f'| {name} | {ms:.2f} |')
    print(f'| **all** | **{per_image_ms:.2f}** ({1e3 / per_image_ms:.0f} images per CPU-second) |\n')
    print('| workers | images/s | images per worker CPU-second | main-process CPU ms / batch '
          '| first batch, fresh / reused workers (s) | iter(), fresh / reused workers (ms) |')
    print('|---:|---:|---:|---:|---:|---:|')
    for r in loaders:
        print(f"| {r['workers']} | {r['img_s']:.0f} | {r['img_per_worker_cpu_s']:.0f} "
              f"| {r['main_cpu_ms_per_batch']:.0f} "
              f"| {r['first_batch_fresh_s']:.2f} / {r['first_batch_reused_s']:.2f} "
              f"| {r['iter_fresh_s'] * 1e3:.0f} / {r['iter_reused_s'] * 1e3:.0f} |")
    augments = ', '.join(f'{name} {ms - preprocessor["normalise"]:.0f}' for name, ms in preprocessor.items()
                         if name != 'normalise')
    print(f"\nData preprocessor on a batch of {batch}, CPU ms with 1 torch thread: stack + normalise "
          f"{preprocessor['normalise']:.0f}; on top of that {augments}")
    if args.out_file:
        Path(args.out_file).write_text(json.dumps(dict(
            config=args.config, images=args.images, height=args.size[0], width=args.size[1], quality=args.quality,
            mean_kib=mean_kib, batch=batch, loadavg_before=loadavg_before, loadavg_after=loadavg_after,
            transforms_ms_per_image=transforms, pipeline_ms_per_image=per_image_ms, loaders=loaders,
            preprocessor_ms_per_batch=preprocessor), indent=2))


if __name__ == '__main__':
    main()
