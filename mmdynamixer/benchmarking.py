"""Time and peak memory of steps (an inference, a training step: callables without arguments), the one measuring
harness of the tools in ``tools/analysis``.

Time: every compared step runs ``warmup`` times untimed, then in ``repeat`` rounds of one timed run each, in turn,
so that drifts in machine load hit them alike; on CUDA each timed run is bracketed by synchronisations, so that it
ends when the device's work does. The tools report medians (:class:`StepTimes`).

Peak memory of a step after the warm-up, beyond what was in use before the first step (the weights and the input;
the optimizer state created by the first step counts):
- CUDA: ``torch.cuda.max_memory_allocated``, reset before the measured step (:func:`cuda_peak_mib`);
- CPU: torch keeps no allocator statistics, so the step is built and run in a fresh process forked from a server
  that has only imported some modules (:func:`fresh_process_peak_mib`), and the kernel's peak resident set (VmHWM,
  reset to the current resident set after the warm-up) is compared with the resident set after building. That is
  what the process really occupies, malloc's retained free memory included. Linux only.
"""
import concurrent.futures
import gc
import multiprocessing
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Union

import torch

# A DynaMixer with S's layout (transition after stage 1) at 56 x 56 (8 x 8 tokens, then 4 x 4), milliseconds a step:
# what the tools' quick modes (``gpu_check.py --quick``) and the tests run.
TINY_ARCH = dict(layers=[1, 1, 1, 1], embed_dims=[16, 32, 32, 32], resolutions=[8, 4, 4, 4],
                 num_segments=[2, 4, 4, 4], reduced_dims=[2, 2, 2, 2],
                 transitions=[True, False, False, False], mlp_ratios=[3, 3, 3, 3])

Step = Callable[[], object]
Device = Union[str, torch.device]


@dataclass
class StepTimes:
    """Seconds of each timed run of one step."""
    seconds: List[float]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def fastest(self) -> float:
        return min(self.seconds)


def synchronize(device: Device) -> None:
    """Wait for the device's queued work (CUDA); nothing to wait for on CPU."""
    device = torch.device(device)
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_step(step: Step, device: Device, clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds of one run of ``step``, from a synchronised start to a synchronised end."""
    synchronize(device)
    start = clock()
    step()
    synchronize(device)
    return clock() - start


def alternate(steps: Mapping[str, Step], device: Device, warmup: int, repeat: int,
              clock: Callable[[], float] = time.perf_counter) -> Dict[str, StepTimes]:
    """Run each step ``warmup`` times, then ``repeat`` rounds of one timed run of each step in turn."""
    if warmup < 0 or repeat < 1:
        raise ValueError(f'warmup must be at least 0 and repeat at least 1, got warmup={warmup}, repeat={repeat}')
    for _ in range(warmup):
        for step in steps.values():
            step()
    seconds = {name: [] for name in steps}
    for _ in range(repeat):
        for name, step in steps.items():
            seconds[name].append(time_step(step, device, clock))
    return {name: StepTimes(values) for name, values in seconds.items()}


def time_for(step: Step, device: Device, min_time: float, max_steps: int, min_steps: int = 3,
             clock: Callable[[], float] = time.perf_counter) -> StepTimes:
    """Timed runs of one step until they add up to ``min_time`` seconds (at least ``min_steps``, at most
    ``max_steps`` runs)."""
    if not 1 <= min_steps <= max_steps:
        raise ValueError(f'need 1 <= min_steps <= max_steps, got min_steps={min_steps}, max_steps={max_steps}')
    seconds = []
    while len(seconds) < min_steps or (len(seconds) < max_steps and sum(seconds) < min_time):
        seconds.append(time_step(step, device, clock))
    return StepTimes(seconds)


def cuda_peak_mib(step: Step, device: Device, warmup: int) -> float:
    """Peak CUDA memory allocated by a run of ``step`` after ``warmup`` runs, over the memory allocated before the
    first run (MiB)."""
    synchronize(device)
    base = torch.cuda.memory_allocated(device)
    for _ in range(warmup):
        step()
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


def _proc_status_kib(field: str) -> int:
    """A memory field of /proc/self/status (VmRSS, VmHWM), in KiB."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'/proc/self/status has no {field} field (peak memory on CPU needs Linux)')


def rss_peak_mib(step: Step, warmup: int) -> float:
    """Peak resident set of this process during a run of ``step`` after ``warmup`` runs, over the resident set
    before the first run (MiB). Only a fresh process's figure is the step's own: see :func:`fresh_process_peak_mib`."""
    gc.collect()
    base = _proc_status_kib('VmRSS')
    for _ in range(warmup):
        step()
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # VmHWM := VmRSS now, so the warm-up's (and a compilation's) peaks do not count
    step()
    return (_proc_status_kib('VmHWM') - base) / 1024


def _peak_of_new_step(make_step: Callable[[], Step], warmup: int, threads: Optional[int]) -> float:
    if threads:
        torch.set_num_threads(threads)
    return rss_peak_mib(make_step(), warmup)


def fresh_process_peak_mib(make_step: Callable[[], Step], warmup: int, threads: Optional[int] = None,
                           preload: Sequence[str] = ('torch',)) -> float:
    """:func:`rss_peak_mib` of the step that ``make_step()`` builds (model, input, optimizer) in a fresh process,
    forked from a server that has imported only ``preload``, with ``threads`` torch threads. ``make_step`` must
    pickle: a module-level function or a ``functools.partial`` of one."""
    context = multiprocessing.get_context('forkserver')
    context.set_forkserver_preload(list(preload))
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(_peak_of_new_step, make_step, warmup, threads).result()


def perturbed(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Move every parameter off its initial value so zero biases and unit norms hide no disagreement; eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return model.eval()
