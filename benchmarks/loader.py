"""Loader headroom: batches/s the training DataLoader delivers / training steps/s of the model."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from spine_lightning.data.datamodule import SpineDataModule
from spine_lightning.data.sources import phantom_subjects
from spine_lightning.models.memory_format import use_channels_last
from spine_lightning.training.module import SpineSegmentationModule

from .training_steps import CPU_NET, _standalone


def augmentation_config(name: str) -> dict:
    """The `augmentation=<name>` config group as training composes it."""
    with initialize_config_dir(str(Path(__file__).resolve().parent.parent / "conf"), version_base=None):
        cfg = compose("train.yaml", overrides=[f"augmentation={name}"])
    return OmegaConf.to_container(cfg.data.augmentation, resolve=True)


def loader_headroom(crop_xyz, spacing: float, subjects: int = 3, batch: int = 2, steps: int = 4,
                    augmentation: str = "default") -> dict:
    """Both sides as the default training runs them: crops read from the on-disk cache (their
    boundary weights stored), the `augmentation` config group applied; training steps of the
    channels-last network (the default since 2026-11-28). Until 2026-11-29 this benchmark timed
    steps in the default layout, 2.5-2.8x slower, and crops held in memory."""
    with tempfile.TemporaryDirectory() as cache:
        dm = SpineDataModule(phantom_subjects(subjects, 1, 1), spacing=spacing, crop_size=crop_xyz, edge_weight=1.1,
                             batch_size=batch, preprocess_workers=1, cache_dir=cache,
                             augmentation=augmentation_config(augmentation))
        dm.setup()
        loader = dm.train_dataloader()
        batches = list(loader)  # warm
        torch.manual_seed(0)  # the same augmentation draws in every run: runs compare, code changes too
        t = time.perf_counter()
        n = 0
        for _ in range(3):
            for _batch in loader:
                n += 1
        loader_rate = n / (time.perf_counter() - t)

    module = _standalone(SpineSegmentationModule(net=CPU_NET, levels=dm.levels))
    use_channels_last(module.net)
    module.training_step(batches[0], 0)
    t = time.perf_counter()
    for i in range(steps):
        module.training_step(batches[i % len(batches)], i)
    step_rate = steps / (time.perf_counter() - t)
    return dict(loader_headroom=loader_rate / step_rate, loader_batches_per_s=loader_rate,
                train_steps_per_s=step_rate, threads=torch.get_num_threads())
