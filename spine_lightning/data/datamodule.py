"""SpineDataModule: vertebra-centred crops per subject and level, split by subject."""

from __future__ import annotations

import logging
from concurrent.futures import ProcessPoolExecutor

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import ConfigError, SpineError
from .boundary import boundary_weights
from .crops import crop_pair, label_centroids
from .intensity import window
from .labels import check_levels, level_value

log = logging.getLogger(__name__)


def preprocess_subject(subject, levels, crop_size, spacing) -> list[dict]:
    """HU crop and binary target of every requested level present in the subject."""
    image, label = subject.load()
    centroids = label_centroids(label)
    crops = []
    for level in levels:
        value = level_value(level)
        if value not in centroids:
            log.warning("subject %s has no %s; skipped", subject.id, level)
            continue
        ct, lab, frame = crop_pair(image, label, centroids[value], crop_size, spacing)
        crops.append(dict(subject=subject.id, level=level, hu=ct, target=(lab == value).astype(np.uint8),
                          centre=tuple(centroids[value]), frame=frame))
    return crops


class CropDataset(Dataset):
    """Crops ready for the network: windowed image, target, boundary weights, level, subject."""

    def __init__(self, crops: list[dict], window_hu, edge_weight: float, flip_lr: bool = False):
        self.crops, self.window_hu, self.edge_weight, self.flip_lr = crops, tuple(window_hu), edge_weight, flip_lr

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, i: int) -> dict:
        crop = self.crops[i]
        image, target = window(crop["hu"], *self.window_hu), crop["target"]
        if self.flip_lr and torch.rand(()) < 0.5:  # left-right mirror: anatomy is near symmetric
            image, target = image[..., ::-1], target[..., ::-1]
        weights = boundary_weights(target, self.edge_weight)
        return dict(
            image=torch.from_numpy(np.ascontiguousarray(image))[None],
            target=torch.from_numpy(np.ascontiguousarray(target)).long(),
            weights=torch.from_numpy(np.ascontiguousarray(weights)),
            level=crop["level"],
            subject=crop["subject"],
        )


def _eval_sampler(dataset: Dataset):
    """Under DDP, give each rank a disjoint share of the evaluation crops, none repeated.

    Lightning's default DistributedSampler pads the last share with repeated crops, which would
    count those crops twice in the synced metrics; with this sampler in place Lightning keeps it.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return None
    if torch.distributed.get_world_size() == 1:
        return None
    from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

    ranks = torch.distributed.get_world_size()
    if len(dataset) < ranks:  # a rank without batches would leave the others waiting in the metric sync
        raise SpineError(f"{len(dataset)} evaluation crops cannot be shared by {ranks} DDP ranks: "
                         f"use more val/test subjects or fewer trainer.devices")
    return UnrepeatedDistributedSampler(dataset, shuffle=False)


class SpineDataModule(L.LightningDataModule):
    def __init__(
        self,
        subjects,
        levels=("L2", "L3", "L4", "L5"),
        spacing: float = 1.0,
        crop_size=(96, 112, 64),
        window_hu=(-1000.0, 2000.0),
        edge_weight: float = 1.0,
        flip_lr: bool = True,
        batch_size: int = 2,
        num_workers: int = 0,
        preprocess_workers: int = 2,
    ):
        super().__init__()
        self.subjects = list(subjects)
        self.levels = check_levels(levels)
        self.spacing, self.crop_size = float(spacing), tuple(int(n) for n in crop_size)
        self.window_hu, self.edge_weight, self.flip_lr = tuple(window_hu), float(edge_weight), flip_lr
        self.batch_size, self.num_workers, self.preprocess_workers = batch_size, num_workers, preprocess_workers
        if self.spacing <= 0:
            raise ConfigError("data.spacing", spacing, "a positive number of millimetres")
        if len(self.crop_size) != 3 or min(self.crop_size) < 1:
            raise ConfigError("data.crop_size", list(crop_size), "three positive voxel counts [X, Y, Z]")
        if not self.window_hu[0] < self.window_hu[1]:
            raise ConfigError("data.window_hu", list(window_hu), "[low, high] with low < high")
        self.crops: dict[str, list[dict]] = {}

    def split_of(self) -> dict[str, list[str]]:
        return {s: [subj.id for subj in self.subjects if subj.split == s] for s in ("train", "val", "test")}

    def setup(self, stage: str | None = None) -> None:
        if self.crops:
            return
        ids = [s.id for s in self.subjects]
        if len(set(ids)) != len(ids):
            raise SpineError("duplicate subject ids: " + ", ".join(sorted({i for i in ids if ids.count(i) > 1})))
        for split, members in self.split_of().items():
            if not members:
                raise SpineError(f"no subject in the {split} split: need at least one each for train, val and test")
        args = [(s, self.levels, self.crop_size, self.spacing) for s in self.subjects]
        if self.preprocess_workers > 1 and len(args) > 1:
            with ProcessPoolExecutor(self.preprocess_workers) as pool:
                results = list(pool.map(preprocess_subject, *zip(*args)))
        else:
            results = [preprocess_subject(*a) for a in args]
        by_id = {s.id: s.split for s in self.subjects}
        self.crops = {"train": [], "val": [], "test": []}
        for crops in results:
            for crop in crops:
                self.crops[by_id[crop["subject"]]].append(crop)

    def _loader(self, split: str, train: bool) -> DataLoader:
        dataset = CropDataset(self.crops[split], self.window_hu, self.edge_weight, flip_lr=self.flip_lr and train)
        return DataLoader(dataset, batch_size=self.batch_size if train else 1, shuffle=train,
                          sampler=None if train else _eval_sampler(dataset),
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self):
        return self._loader("train", True)

    def val_dataloader(self):
        return self._loader("val", False)

    def test_dataloader(self):
        return self._loader("test", False)
