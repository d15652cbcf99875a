"""What ``tools/analysis/gpu_check.py --step engine`` names in the config it trains with ``tools/train.py``: an
in-memory dataset of ImageNet-shaped, already packed samples (the engine is timed, not the disk or the pipeline),
and a hook that records when each training iteration ended. Importing this module registers both."""
import json
import os
import time

import torch
from mmengine.dataset import BaseDataset
from mmengine.hooks import Hook
from mmpretrain.registry import DATASETS, HOOKS
from mmpretrain.structures import DataSample


@DATASETS.register_module()
class PackedRandomImages(BaseDataset):
    """``num_images`` samples as ``PackInputs`` leaves them: one random uint8 (3, size, size) image shared by all,
    and label ``index % num_classes``."""

    def __init__(self, num_images: int, size: int = 224, num_classes: int = 1000, **kwargs):
        self.num_images, self.size, self.num_classes = num_images, size, num_classes
        super().__init__(serialize_data=False, **kwargs)
        self.image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8,
                                   generator=torch.Generator().manual_seed(0))

    def load_data_list(self):
        return [dict(gt_label=index % self.num_classes) for index in range(self.num_images)]

    def prepare_data(self, idx):
        return dict(inputs=self.image, data_samples=DataSample().set_gt_label(self.get_data_info(idx)['gt_label']))


@HOOKS.register_module()
class IterationEndTimes(Hook):
    """Writes the wall-clock time at the end of each training iteration (after a CUDA synchronisation) to
    ``<work_dir>/iteration_end_times.json`` when training ends."""
    priority = 'LOWEST'

    def before_train(self, runner) -> None:
        self.times = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())

    def after_train(self, runner) -> None:
        batch = runner.train_dataloader.batch_size
        with open(os.path.join(runner.work_dir, 'iteration_end_times.json'), 'w') as file:
            json.dump(dict(batch=batch, world_size=runner.world_size, times=self.times), file)
