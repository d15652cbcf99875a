"""One-shot GPU check: DynaMixer-S/M/L (ours) against the release's forward, for speed and agreement.

    python tools/analysis/gpu_check.py [--out-dir work_dirs/gpu_check] [--arch s m l] [--budget-s 420]
    python tools/analysis/gpu_check.py --quick --device cpu   # the same code in seconds (tiny arch, batch 2)
    python tools/analysis/gpu_check.py --step recipe          # the recipe's training step (needs mmpretrain)
    python tools/analysis/gpu_check.py --step engine --arch s # tools/train.py itself, and the loader workers it needs

Needs torch and this repository's model package only (no OpenMMLab stack). Writes ``gpu_check.json`` and
``gpu_check.md`` to ``--out-dir`` and exits 1 if an output of ours is not finite or strays from the release's
beyond the tolerance of its precision.

Rows: each arch and implementation (``--impl``: ``ours``, the eager op; ``ours-fused``, the fused Triton mixing
kernel, CUDA only; ``release``, ``mmdynamixer.release_reference``), inference and a training step at the recipe's
per-GPU batch (S 256, M 128, L 64; halved on out-of-memory, recorded). ``--step plain`` (the default): forward,
cross-entropy, backward, AdamW (float16 with a GradScaler), no drop path. ``--step recipe``: the recipe's step as
its config builds it (``configs/dynamixer/dynamixer-<arch>_*_in1k.py``, bf16 from the ``-bf16`` config): drop path
(S 0.1, M and L 0.3), uint8 images normalised by mmpretrain's data preprocessor with Mixup/CutMix, label-smoothed
soft-target loss, mmengine's AmpOptimWrapper with AdamW and its weight-decay groups (bf16; fp16 with the dynamic
loss scaler), and an EMA update per step; training rows only, in bf16 and fp16. Precisions:
- ``fp32``: float32, TF32 off for matmuls and convolutions; ``tf32``: float32 with TF32 on for both;
- ``bf16``, ``fp16``: autocast (torch's defaults otherwise: TF32 off for matmuls, on for convolutions);
- eager, and ``torch.compile`` (``dynamic=False``) of each layer (``--compile-scope layer``, one compiled graph
  per stage's shapes, fast to compile) or of the whole model (``model``).
Each row reports images/s (the median step of :func:`mmdynamixer.benchmarking.time_for`: warm-up steps, then
synchronised steps until ``--min-time`` seconds have passed), achieved TFLOP/s (2 FLOPs per multiply-add of
:func:`mmdynamixer.analysis.complexity`, 7.32 / 17.02 / 27.40 G per 224 x 224 image for S / M / L, x3 for a training
step) and its fraction of the matmul peak measured here for that precision, peak memory (CUDA:
:func:`mmdynamixer.benchmarking.cuda_peak_mib` of a step after the warm-up, beyond the weights and the batch:
activations, gradients, optimizer state; not measured on CPU), and ``rel_diff``: max |logits - release's float32 logits|
/ max |release's logits| on the same images and weights (the first step's forward for training rows). A row of ours
is ``ok`` when its logits are finite and its ``rel_diff`` is within the larger of :data:`TOLERANCE` for its
precision and twice the release's own ``rel_diff`` in the same setting. Rows run in order of priority (eager
before compiled, bf16 first); rows that would pass ``--budget-s`` are recorded as skipped. ``--quick`` runs a
tiny arch at batch 2 in fp32 and bf16, eager, on ``--device`` (default: cuda when available, else cpu).

``--step engine`` times ``tools/train.py`` itself: the first ``--arch``'s bf16 recipe config (compiled on CUDA by
default), one process, ``--engine-iters`` iterations on in-memory ImageNet-shaped samples
(:mod:`mmdynamixer.testing.synthetic`: the engine, EMA and logging included; disk and pipeline excluded), images/s
over the iterations after the first ``--warmup``. Then ``tools/analysis/benchmark_pipeline.py`` measures the recipe's
input pipeline per loader-worker CPU-second, and the report says how many workers per GPU feed that speed. Writes
``gpu_check_engine.json`` and ``.md``.
"""
import argparse
import datetime
import gc
import importlib
import json
import math
import platform
import sys
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F

from mmdynamixer import benchmarking
from mmdynamixer.benchmarking import TINY_ARCH, perturbed
from mmdynamixer.analysis import complexity
from mmdynamixer.cli import (add_arch_argument, add_deprecated_alias, add_device_argument, add_precision_argument,
                             parse_arch)
from mmdynamixer.models import DynaMixerLayer, DynaMixerNet, resolve_arch
from mmdynamixer.release_reference import RefDynaMixer, RefLayer

# The recipe's images per GPU.
RECIPE_BATCH = {'s': 256, 'm': 128, 'l': 64}
PATCH_SIZE = 7
AUTOCAST = {'fp32': None, 'tf32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}
MATMUL_DTYPE = {'fp32': torch.float32, 'tf32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}
# rel_diff accepted whatever the release's own rel_diff in the same setting.
TOLERANCE = {'fp32': 1e-3, 'tf32': 2e-2, 'bf16': 8e-2, 'fp16': 2e-2}
IMPLEMENTATIONS = ('ours', 'ours-fused', 'release')
# The recipe config of each arch, per precision (bf16 runs the -bf16 variant).
RECIPE_CONFIGS = {'s': 'dynamixer-s_8xb256{}_in1k.py', 'm': 'dynamixer-m_8xb128{}_in1k.py',
                  'l': 'dynamixer-l_8xb64{}_in1k.py', 'tiny': 'dynamixer-s_8xb256{}_in1k.py'}
RECIPE_PRECISIONS = ('bf16', 'fp16')
REPO = Path(__file__).resolve().parents[2]
MODES = ('infer', 'train')
FIRST_COMPILE_ESTIMATE_S = 90.0


def set_tf32(precision: str) -> None:
    """TF32 for the row's precision (see the module docstring)."""
    torch.backends.cuda.matmul.allow_tf32 = precision == 'tf32'
    torch.backends.cudnn.allow_tf32 = precision != 'fp32'


def measure_matmul_peak(device: torch.device, precision: str, size: int, min_time: float) -> float:
    """TFLOP/s of a size^3 matmul in the precision's dtype (and TF32 setting) on ``device``: the median step."""
    set_tf32(precision)
    a = torch.randn(size, size, device=device, dtype=MATMUL_DTYPE[precision])
    b = torch.randn(size, size, device=device, dtype=MATMUL_DTYPE[precision])
    for _ in range(3):
        a @ b
    timing = benchmarking.time_for(lambda: a @ b, device, min_time, max_steps=200)
    return 2 * size ** 3 / timing.median / 1e12


def forward_flops(arch, image_size: int) -> float:
    """FLOPs of one image's forward: 2 per multiply-add of :func:`mmdynamixer.analysis.complexity`."""
    return 2.0 * complexity(arch, (image_size, image_size))['flops']


def build(impl: str, arch, state: dict, device, compile_scope, drop_path_rate: float = 0.0):
    """A fresh model of ``impl`` holding ``state``, on ``device``; compiled per layer or whole if asked."""
    if impl == 'release':
        model = RefDynaMixer(resolve_arch(arch), drop_path_rate=drop_path_rate)
    else:
        model = DynaMixerNet(arch, drop_path_rate=drop_path_rate, fused_mixing=impl == 'ours-fused')
    model.load_state_dict(state)
    model.to(device)
    if compile_scope == 'layer':
        for module in model.modules():
            if isinstance(module, (DynaMixerLayer, RefLayer)):
                module.compile(dynamic=False)
    elif compile_scope == 'model':
        model.compile(dynamic=False)
    return model


def make_step(model, mode: str, precision: str, images, labels):
    """One inference or training step returning the logits (detached)."""
    device_type = images.device.type
    dtype = AUTOCAST[precision]
    autocast = dict(device_type=device_type, dtype=dtype or torch.float32, enabled=dtype is not None)
    model.train(mode == 'train')
    if mode == 'infer':
        def step():
            with torch.no_grad(), torch.autocast(**autocast):
                return model(images)
        return step
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    scaler = torch.amp.GradScaler(device_type, enabled=precision == 'fp16')

    def step():
        with torch.autocast(**autocast):
            logits = model(images)
            loss = F.cross_entropy(logits.float(), labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        return logits.detach()
    return step


def recipe_config(arch_name: str, precision: str):
    """The recipe config of ``arch_name`` ('tiny': the S recipe) for ``precision`` (bf16: its -bf16 variant)."""
    from mmengine.config import Config
    name = RECIPE_CONFIGS[arch_name].format('-bf16' if precision == 'bf16' else '')
    return Config.fromfile(REPO / 'configs' / 'dynamixer' / name)


def make_recipe_step(model, arch_name: str, precision: str, images, labels):
    """The recipe's training step for ``model`` as its config declares it (see the module docstring), on uint8
    images made from ``images``. Returns the step (returning the logits) and ``check``: the model's eval forward on
    ``images`` under the step's autocast, for the comparison with the release."""
    import mmpretrain.models  # noqa: F401  (registers the data preprocessor, batch augments and losses)
    from mmengine.model import ExponentialMovingAverage
    from mmengine.optim import build_optim_wrapper
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample

    from mmdynamixer.engine.runner import float32_optim_wrapper

    cfg = recipe_config(arch_name, precision)
    device = images.device
    preprocessor = MODELS.build(dict(cfg.data_preprocessor, type='ClsDataPreprocessor',
                                     batch_augments=cfg.model.train_cfg)).to(device)
    loss_module = MODELS.build(cfg.model.head.loss)
    optim_cfg = cfg.optim_wrapper.to_dict()
    if device.type != 'cuda':  # mmengine's AmpOptimWrapper asserts CUDA; autocast is applied below either way
        optim_cfg = float32_optim_wrapper(optim_cfg)
    optim_wrapper = build_optim_wrapper(model, optim_cfg)
    ema_cfg = next(hook for hook in cfg.custom_hooks if hook['type'] == 'EMAHook')
    ema = ExponentialMovingAverage(model, momentum=ema_cfg['momentum'], update_buffers=ema_cfg['update_buffers'])
    pixels = (images * 58 + 120).clamp(0, 255).to(torch.uint8)
    label_list = labels.tolist()
    autocast = dict(device_type=device.type, dtype=AUTOCAST[precision])

    def step():
        samples = [DataSample().set_gt_label(label) for label in label_list]  # a fresh batch's, as the loader's
        data = preprocessor(dict(inputs=pixels, data_samples=samples), training=True)
        with optim_wrapper.optim_context(model), torch.autocast(**autocast):
            logits = model(data['inputs'])
            targets = torch.stack([sample.gt_score for sample in data['data_samples']])
            loss = loss_module(logits, targets, avg_factor=logits.shape[0])
        optim_wrapper.update_params(loss)
        ema.update_parameters(model)
        return logits.detach()

    def check():
        model.eval()
        with torch.no_grad(), torch.autocast(**autocast):
            logits = model(images).float()
        model.train()
        return logits

    model.train()
    return step, check


def is_oom(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or 'out of memory' in str(error)


def release_logits(state, arch, images):
    """The release's float32 logits (TF32 off) for ``images``."""
    set_tf32('fp32')
    model = build('release', arch, state, images.device, None).eval()
    with torch.no_grad():
        return model(images).float()


def run_row(row: dict, arch, state: dict, device, args, reference_cache: dict) -> dict:
    """Measure one row, halving the batch on out-of-memory; fills the row's result fields."""
    batch = row['requested_batch']
    while True:
        try:
            return measure(row, arch, state, device, args, batch, reference_cache)
        except RuntimeError as error:
            if not is_oom(error) or batch == 1:
                raise
        # Out of the except block: the traceback, and the tensors its frames hold, are gone.
        row['oom_halvings'] += 1
        batch //= 2
        reference_cache.clear()
        release_memory(device)


def measure(row, arch, state, device, args, batch, reference_cache) -> dict:
    size = row['image_size']
    gen = torch.Generator().manual_seed(batch)
    images = torch.randn(batch, 3, size, size, generator=gen).to(device)
    labels = torch.randint(0, 1000, (batch,), generator=gen).to(device)
    if batch not in reference_cache:
        reference_cache.clear()
        reference_cache[batch] = release_logits(state, arch, images)
    reference = reference_cache[batch]

    start = time.perf_counter()
    set_tf32(row['precision'])
    compile_scope = args.compile_scope if row['compile'] else None
    outputs = []
    if args.step == 'recipe':
        drop_path_rate = recipe_config(row['arch'], row['precision']).model.backbone.drop_path_rate
        model = build(row['impl'], arch, state, device, compile_scope, drop_path_rate)
        step, check = make_recipe_step(model, row['arch'], row['precision'], images, labels)
        outputs.append(check())
    else:
        model = build(row['impl'], arch, state, device, compile_scope)
        step = make_step(model, row['mode'], row['precision'], images, labels)

    def step_keeping_first():  # the first forward: the weights the reference holds (compiles, if compiled)
        logits = step()
        if not outputs:
            outputs.append(logits.float())

    if device.type == 'cuda':
        peak_memory_mib = benchmarking.cuda_peak_mib(step_keeping_first, device, args.warmup)
    else:
        for _ in range(args.warmup):
            step_keeping_first()
        peak_memory_mib = None
    timing = benchmarking.time_for(step, device, args.min_time, args.max_steps)
    first, last = outputs[0], step().float()

    flops = row['forward_flops'] * (3 if row['mode'] == 'train' else 1)
    images_per_s = batch / timing.median
    rel_diff = ((first - reference).abs().max() / reference.abs().max()).item()
    finite = bool(torch.isfinite(first).all() and torch.isfinite(last).all())
    row.update(
        status='done', batch=batch, steps=len(timing.seconds), step_s=timing.seconds, images_per_s=images_per_s,
        tflops=images_per_s * flops / 1e12, peak_memory_mib=peak_memory_mib,
        rel_diff=rel_diff if math.isfinite(rel_diff) else None, finite=finite, seconds=time.perf_counter() - start)
    del model, step, outputs
    release_memory(device)
    return row


def engine_check(args) -> int:
    """``--step engine`` (see the module docstring)."""
    import subprocess
    import tempfile
    from mmengine.config import Config

    arch_name = 'tiny' if args.quick else args.arch[0] if isinstance(args.arch[0], str) else 's'
    cfg = recipe_config(arch_name if arch_name in RECIPE_CONFIGS else 's', 'bf16')
    batch = args.batch or cfg.train_dataloader.batch_size
    iterations = args.engine_iters
    cfg.custom_imports = dict(imports=['mmdynamixer', 'mmdynamixer.testing.synthetic'], allow_failed_imports=False)
    cfg.train_dataloader.update(batch_size=batch, num_workers=4, persistent_workers=True)
    cfg.train_dataloader.dataset = dict(type='PackedRandomImages', num_images=batch * iterations)
    cfg.train_cfg.update(max_epochs=1)
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator', 'test_dataloader', 'test_cfg', 'test_evaluator'):
        cfg[key] = None
    cfg.default_hooks.checkpoint = None
    cfg.custom_hooks = list(cfg.custom_hooks) + [dict(type='IterationEndTimes')]
    if arch_name == 'tiny':
        cfg.model.backbone.arch = TINY_ARCH
        cfg.model.head.in_channels = TINY_ARCH['embed_dims'][-1]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix='gpu_check_engine_') as tmp:
        config_file = Path(tmp) / 'engine.py'
        cfg.dump(str(config_file))
        start = time.perf_counter()
        subprocess.run([sys.executable, str(REPO / 'tools' / 'train.py'), str(config_file), '--work-dir', tmp],
                       check=True)
        train_s = time.perf_counter() - start
        timing = json.loads((Path(tmp) / 'iteration_end_times.json').read_text())
        pipeline_file = Path(tmp) / 'pipeline.json'
        subprocess.run([sys.executable, str(REPO / 'tools' / 'analysis' / 'benchmark_pipeline.py'),
                        '--config', str(REPO / 'configs' / 'dynamixer' / RECIPE_CONFIGS['s'].format('-bf16')),
                        '--images', str(args.pipeline_images), '--batch', '64', '--workers', '2', '--epochs', '2',
                        '--out-file', str(pipeline_file)], check=True)
        pipeline = json.loads(pipeline_file.read_text())
    times = timing['times'][args.warmup:]
    images_per_s = timing['batch'] * (len(times) - 1) / (times[-1] - times[0])
    per_worker = pipeline['loaders'][0]['img_per_worker_cpu_s']
    report = dict(
        env=dict(torch=torch.__version__, cuda=torch.version.cuda, python=platform.python_version(),
                 device_name=(torch.cuda.get_device_name() if torch.cuda.is_available()
                              else platform.processor() or platform.machine()),
                 date=datetime.datetime.now().isoformat(timespec='seconds')),
        arch=arch_name, config=RECIPE_CONFIGS.get(arch_name, RECIPE_CONFIGS['s']).format('-bf16'), batch=batch,
        iterations=len(timing['times']), timed_iterations=len(times) - 1, images_per_s=images_per_s,
        train_py_seconds=train_s, pipeline_images_per_worker_cpu_s=per_worker,
        workers_per_gpu=math.ceil(images_per_s / per_worker))
    (args.out_dir / 'gpu_check_engine.json').write_text(json.dumps(report, indent=1))
    text = (f'# tools/train.py on {report["env"]["device_name"]}\n\n'
            f'torch {report["env"]["torch"]}, {report["env"]["date"]}; {report["config"]}, arch {arch_name}, batch '
            f'{batch}, in-memory samples, one process.\n\n'
            f'- {images_per_s:.0f} images/s over iterations {args.warmup + 1}-{len(timing["times"])} '
            f'(tools/train.py ran {train_s:.0f} s in all, compilation included)\n'
            f'- the recipe pipeline: {per_worker:.0f} images per loader-worker CPU-second '
            f'(benchmark_pipeline.py, 375 x 500 JPEGs): {report["workers_per_gpu"]} workers per GPU feed that speed\n')
    (args.out_dir / 'gpu_check_engine.md').write_text(text)
    print(text)
    return 0


def release_memory(device) -> None:
    gc.collect()
    if device.type == 'cuda':
        torch.cuda.empty_cache()


def plan_rows(args, archs):
    """Every row, in the order they run: eager before compiled, then precision, arch, mode, implementation."""
    compiles = [False] + ([True] if args.compile else [])
    modes = ('train',) if args.step == 'recipe' else MODES
    precisions = [p for p in args.precision if args.step != 'recipe' or p in RECIPE_PRECISIONS]
    rows = []
    for compiled in compiles:
        for precision in precisions:
            for name, arch in archs.items():
                for mode in modes:
                    for impl in args.impl:
                        size = resolve_arch(arch)['resolutions'][0] * PATCH_SIZE
                        rows.append(dict(
                            arch=name, impl=impl, mode=mode, precision=precision, compile=compiled,
                            image_size=size, requested_batch=args.batch or RECIPE_BATCH.get(name, 2),
                            oom_halvings=0, status='pending'))
    return rows


def judge(rows) -> None:
    """Set each measured row's ``tolerance`` and ``ok`` (see the module docstring)."""
    done = {(r['arch'], r['mode'], r['precision'], r['compile'], r['impl']): r for r in rows if r['status'] == 'done'}
    for (arch, mode, precision, compiled, impl), row in done.items():
        release = done.get((arch, mode, precision, compiled, 'release'))
        tolerance = TOLERANCE[precision]
        if impl != 'release' and release is not None and release['rel_diff'] is not None:
            tolerance = max(tolerance, 2 * release['rel_diff'])
        row['tolerance'] = tolerance
        row['ok'] = row['finite'] and row['rel_diff'] is not None and row['rel_diff'] <= tolerance


def speedups(rows):
    """ours (each of our implementations) / release images/s for each (arch, mode, precision, compile) where both
    ran."""
    done = {(r['arch'], r['mode'], r['precision'], r['compile'], r['impl']): r for r in rows if r['status'] == 'done'}
    result = []
    for (arch, mode, precision, compiled, impl), row in done.items():
        release = done.get((arch, mode, precision, compiled, 'release'))
        if impl != 'release' and release is not None:
            result.append(dict(arch=arch, mode=mode, precision=precision, compile=compiled, impl=impl,
                               ours_over_release=row['images_per_s'] / release['images_per_s']))
    return result


def markdown(report: dict) -> str:
    env = report['env']
    peaks = ', '.join(f'{key} {value:.3g}' for key, value in report['matmul_peak_tflops'].items())
    lines = [f'# DynaMixer GPU check: {env["device_name"]}', '',
             f'{env.get("step", "plain")} step; torch {env["torch"]} (CUDA {env["cuda"]}), {env["date"]}; '
             f'matmul peak TFLOP/s ({env["matmul_size"]}^3): {peaks}.', '',
             '| arch | mode | precision | compile | impl | batch | img/s | TFLOP/s | % of peak | peak MiB '
             '| rel diff | ok |',
             '|---|---|---|---|---|---|---|---|---|---|---|---|']
    for row in report['rows']:
        head = (f'| {row["arch"]} | {row["mode"]} | {row["precision"]} | {"yes" if row["compile"] else "no"} '
                f'| {row["impl"]} ')
        if row['status'] != 'done':
            lines.append(head + f'| {row["requested_batch"]} | {row["status"]} | | | | | |')
            continue
        batch = f'{row["batch"]}' + (f' (OOM at {row["requested_batch"]})' if row['oom_halvings'] else '')
        memory = '' if row['peak_memory_mib'] is None else f'{row["peak_memory_mib"]:.0f}'
        rel = 'n/a' if row['rel_diff'] is None else f'{row["rel_diff"]:.1e}'
        lines.append(head + f'| {batch} | {row["images_per_s"]:.1f} | {row["tflops"]:.3g} '
                            f'| {100 * row["peak_fraction"]:.1f} | {memory} | {rel} | {"yes" if row["ok"] else "NO"} |')
    lines += ['', '| arch | mode | precision | compile | impl | impl / release img/s |', '|---|---|---|---|---|---|']
    lines += [f'| {s["arch"]} | {s["mode"]} | {s["precision"]} | {"yes" if s["compile"] else "no"} | {s["impl"]} '
              f'| {s["ours_over_release"]:.2f} |' for s in report['speedups']]
    return '\n'.join(lines) + '\n'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out-dir', type=Path, default=Path('work_dirs/gpu_check'))
    parser.add_argument('--quick', action='store_true',
                        help='tiny arch, batch 2, fp32 and bf16, eager only: the same code in seconds')
    add_arch_argument(parser, default=('s', 'm', 'l'))
    add_precision_argument(parser, list(AUTOCAST), default=('bf16', 'fp16', 'tf32', 'fp32'))
    add_device_argument(parser)
    parser.add_argument('--batch', type=int, help='images per step for every arch (default: the recipe\'s)')
    parser.add_argument('--step', choices=['plain', 'recipe', 'engine'], default='plain',
                        help="the training step: plain (forward, loss, backward, AdamW), the recipe's, or "
                             "tools/train.py itself (engine; see above)")
    parser.add_argument('--engine-iters', type=int, default=50, help='--step engine: iterations of tools/train.py')
    parser.add_argument('--pipeline-images', type=int, default=768,
                        help='--step engine: JPEGs for benchmark_pipeline.py')
    parser.add_argument('--impl', nargs='+', choices=IMPLEMENTATIONS,
                        help='implementations to time (default: all; --quick: ours and release, the fused kernel '
                             'needing CUDA)')
    parser.add_argument('--no-compile', dest='compile', action='store_false', help='eager rows only')
    parser.add_argument('--compile-scope', choices=['layer', 'model'], default='layer')
    parser.add_argument('--warmup', type=int, default=3, help='untimed steps per row (the first compiles)')
    parser.add_argument('--min-time', type=float, default=1.0, help='seconds of timed steps per row')
    parser.add_argument('--max-steps', type=int, default=20)
    parser.add_argument('--budget-s', type=float, default=420.0,
                        help='rows that would end later than this many seconds after the start are skipped')
    add_deprecated_alias(parser, '--archs', '--arch', 'arch', nargs='+', type=parse_arch)
    add_deprecated_alias(parser, '--precisions', '--precision', 'precision', nargs='+', choices=list(AUTOCAST))
    args = parser.parse_args(argv)
    if args.impl is None:
        args.impl = ['ours', 'release'] if args.quick else list(IMPLEMENTATIONS)
    if args.quick:
        args.precision = [p for p in args.precision if p in ('fp32', 'bf16')] or ['fp32', 'bf16']
        args.batch, args.compile, args.warmup, args.min_time, args.max_steps = args.batch or 2, False, 1, 0.0, 3
    elif torch.device(args.device).type != 'cuda':
        parser.error(f'--device {args.device}: the full check needs a CUDA device; --quick runs the same code on '
                     f'any device in seconds')
    if args.batch is not None and args.batch < 1:
        parser.error(f'--batch must be at least 1, got {args.batch}')
    if args.warmup < 1:
        parser.error(f'--warmup must be at least 1 (the first step is compared with the release), got {args.warmup}')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.step == 'engine':
        return engine_check(args)
    start = time.perf_counter()
    device = torch.device(args.device)
    dynamo = None
    if args.quick:
        archs, matmul_size = {'tiny': TINY_ARCH}, 256
    else:
        archs = {arch if isinstance(arch, str) else f'custom{i}': arch for i, arch in enumerate(args.arch)}
        matmul_size = 8192
        dynamo = importlib.import_module('torch._dynamo')
        for option in ('cache_size_limit', 'recompile_limit'):  # compiled rows recompile per shape and precision
            if hasattr(dynamo.config, option):
                setattr(dynamo.config, option, 1024)

    peaks = {p: measure_matmul_peak(device, p, matmul_size, min(args.min_time, 0.5)) for p in args.precision}
    rows = plan_rows(args, archs)
    states = {}
    for name, arch in archs.items():
        states[name] = perturbed(DynaMixerNet(arch)).state_dict()
        for row in rows:
            if row['arch'] == name:
                row['forward_flops'] = forward_flops(arch, row['image_size'])

    longest_compiled_row = None  # seconds, once a compiled row has run
    reference_cache, cache_key = {}, None
    for row in rows:
        expected = (longest_compiled_row or FIRST_COMPILE_ESTIMATE_S) if row['compile'] else 0.0
        if time.perf_counter() - start + expected > args.budget_s:
            row['status'] = 'skipped (time budget)'
            continue
        if cache_key != row['arch']:
            reference_cache, cache_key = {}, row['arch']
        if row['compile']:
            dynamo.reset()
        label = (f'{row["arch"]} {row["impl"]:7} {row["mode"]:5} {row["precision"]} '
                 f'{"compiled" if row["compile"] else "eager   "}')
        try:
            run_row(row, archs[row['arch']], states[row['arch']], device, args, reference_cache)
        except Exception as error:  # one failing row (a compiler error, say) must not lose the others
            traceback.print_exc()
            row.update(status=f'error: {type(error).__name__}: {str(error).splitlines()[0][:200]}', ok=False)
            release_memory(device)
            print(f'{label}: {row["status"]}', flush=True)
            continue
        row['peak_fraction'] = row['tflops'] / peaks[row['precision']]
        if row['compile']:
            longest_compiled_row = max(longest_compiled_row or 0.0, row['seconds'])
        print(f'{label} batch {row["batch"]}: {row["images_per_s"]:.1f} img/s, rel diff {row["rel_diff"]}',
              flush=True)

    judge(rows)
    ours_ok = all(row.get('ok', True) for row in rows if row['impl'] != 'release')
    report = dict(
        env=dict(torch=torch.__version__, cuda=torch.version.cuda, python=platform.python_version(),
                 device=device.type, device_name=(torch.cuda.get_device_name(device) if device.type == 'cuda'
                                                  else platform.processor() or platform.machine()),
                 capability=('.'.join(map(str, torch.cuda.get_device_capability(device)))
                             if device.type == 'cuda' else None),
                 quick=args.quick, step=args.step, compile_scope=args.compile_scope, matmul_size=matmul_size,
                 date=datetime.datetime.now().isoformat(timespec='seconds'),
                 seconds=time.perf_counter() - start),
        matmul_peak_tflops=peaks, tolerance=TOLERANCE, rows=rows, speedups=speedups(rows), ok=ours_ok)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / 'gpu_check.json').write_text(json.dumps(report, indent=1))
    (args.out_dir / 'gpu_check.md').write_text(markdown(report))
    print(markdown(report))
    return 0 if ours_ok else 1


if __name__ == '__main__':
    sys.exit(main())
