"""SpineDataModule: vertebra-centred crops per subject and level, split by subject."""

from __future__ import annotations

import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from spine_lightning.core.errors import ConfigError, SpineError
from spine_lightning.data.augmentation import augment, build_augmentation
from spine_lightning.data.boundary import boundary_weights
from spine_lightning.data.cache import CropCache, fill_one
from spine_lightning.data.crops import OUTSIDE_MODES, crop_pair, inside_scan, label_centroids
from spine_lightning.data.intensity import window
from spine_lightning.data.labels import check_levels, level_value
from spine_lightning.data.mix import source_sampler
from spine_lightning.data.splits import assign_folds

log = logging.getLogger(__name__)


def absent_level(subject, level: str, strict: bool) -> None:
    """A requested level the subject's label map lacks: a warning, or an error with data.strict."""
    where = getattr(subject, "label_source", None)
    message = f"subject {subject.id} has no {level}" + (f" in {where}" if where else "")
    if strict:
        raise SpineError(message + " (data.strict=true)")
    log.warning("%s; skipped", message)


def preprocess_subject(
    subject, levels, crop_size, spacing, strict: bool = False, outside: str = "repeat"
) -> list[dict]:
    """HU crop and binary target of every requested level present in the subject."""
    image, label = subject.load()
    centroids = subject.crop_centres(label) if hasattr(subject, "crop_centres") else label_centroids(label)
    crops = []
    for level in levels:
        value = level_value(level)
        if value not in centroids:
            absent_level(subject, level, strict)
            continue
        ct, lab, frame = crop_pair(image, label, centroids[value], crop_size, spacing, outside)
        crops.append(
            dict(
                subject=subject.id,
                level=level,
                hu=ct,
                target=(lab == value).astype(np.uint8),
                valid=inside_scan(image, frame),
                centre=tuple(centroids[value]),
                frame=frame,
            )
        )
    return crops


def _process_pool(workers: int) -> ProcessPoolExecutor:
    """Workers started fresh ("spawn"), not forked: a child forked after torch's OpenMP threads
    ran segfaults in libgomp on its first parallel op (seen on a 16-core machine)."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


class CropDataset(Dataset):
    """Crops ready for the network: windowed image, target, boundary weights, `valid` (1 inside the
    scan, 0 past its edge), level, subject and source.

    Stored crops may be larger than the network's input by `margin` voxels on every side: then the
    input is cut from their middle, or with `jitter` from a random offset of up to `margin` voxels
    per axis, so the vertebra to segment sits up to that far from the centre, as it does behind an
    imperfect localiser.
    `transform`: a TorchIO augmentation (augmentation.py) applied to the HU crop, target and weights
    together before windowing; `spacing`: the crops' voxel size (mm), which it works in.
    """

    def __init__(
        self,
        crops: list[dict],
        window_hu,
        edge_weight: float,
        flip_lr: bool = False,
        margin: int = 0,
        jitter: bool = False,
        transform=None,
        spacing: float = 1.0,
    ):
        self.crops, self.window_hu, self.edge_weight, self.flip_lr = crops, tuple(window_hu), edge_weight, flip_lr
        self.margin, self.jitter = int(margin), bool(jitter)
        self.transform, self.spacing = transform, float(spacing)

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, i: int) -> dict:
        crop, m = self.crops[i], self.margin
        hu = _view(crop, "hu")
        box = (slice(None),) * 3
        if m:  # the network's input is cut from the stored crop before anything is copied or computed
            offset = torch.randint(-m, m + 1, (3,)).tolist() if self.jitter else [0, 0, 0]
            box = tuple(slice(m + o, n - m + o) for o, n in zip(offset, hu.shape))
        hu, target = hu[box], np.array(_view(crop, "target")[box])
        if "weights_path" in crop:
            weights = np.array(_view(crop, "weights")[box])
        else:  # from the whole stored target, as the cache does: a crop face is not a contour
            weights = boundary_weights(_view(crop, "target"), self.edge_weight)[box]
        if "valid" in crop or "valid_path" in crop:
            valid = np.array(_view(crop, "valid")[box])
        else:  # a crop made without the mask: all of it counts
            valid = np.ones(target.shape, dtype=np.uint8)
        if self.transform is not None:  # the inside-the-scan mask moves with the anatomy; padding is outside
            hu, maps = augment(self.transform, hu, self.spacing, target=target, weights=weights, valid=valid)
            target, weights, valid = maps["target"], maps["weights"], maps["valid"]
        image = window(hu, *self.window_hu)
        if self.flip_lr and torch.rand(()) < 0.5:  # left-right mirror: anatomy is near symmetric
            image, target, weights, valid = image[..., ::-1], target[..., ::-1], weights[..., ::-1], valid[..., ::-1]
        return dict(
            image=torch.from_numpy(np.ascontiguousarray(image))[None],
            target=torch.from_numpy(np.ascontiguousarray(target)).long(),
            weights=torch.from_numpy(np.ascontiguousarray(weights)),
            valid=torch.from_numpy(np.ascontiguousarray(valid)),
            level=crop["level"],
            subject=crop["subject"],
            source=crop.get("source", ""),
        )


def _view(crop: dict, name: str) -> np.ndarray:
    """A crop's array: in memory, or memory-mapped from the preprocessing cache (opened per use, so
    that DataLoader workers never copy it; callers copy only the part they use)."""
    path = crop.get(f"{name}_path")
    return np.load(path, mmap_mode="r") if path else crop[name]


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
        raise SpineError(
            f"{len(dataset)} evaluation crops cannot be shared by {ranks} DDP ranks: "
            f"use more val/test subjects or fewer trainer.devices"
        )
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
        cache_dir: str | None = None,
        strict: bool = False,
        fold: int = 0,
        num_folds: int = 5,
        split_seed: int = 0,
        root: str | None = None,
        manifest: str | None = None,
        label_map=None,
        centre_jitter_mm: float = 0.0,
        train_samples_per_epoch: int | None = None,
        augmentation=None,
        outside_scan: str = "repeat",
    ):
        """`cache_dir`: the on-disk preprocessing cache (None: crops in memory, computed per run).
        `strict`: a requested level absent from a subject is an error instead of a warning.
        `fold`, `num_folds`, `split_seed`: k-fold split by subject for sources without a split.
        `root`, `manifest`, `label_map`: the subject source's settings; `subjects` reads them by
        interpolation (`${data.root}`), they are named here so that the config stays flat.
        `centre_jitter_mm`: training crops are centred up to this far (per axis) off the vertebra's
        centroid; crops are stored that much larger, and evaluation uses their middle.
        `train_samples_per_epoch`: training crops drawn per epoch (None: as many as there are); with
        several sources (data=mix) crops are drawn by source weight, with replacement.
        `augmentation`: the `augmentation` config group (conf/augmentation/*.yaml), applied to
        training crops only; None or empty: none.
        `outside_scan`: what fills a crop past the scan's edge, "repeat" (its border voxels, as
        prediction does) or "air"; the loss and metrics skip those voxels either way."""
        super().__init__()
        self.source = dict(root=root, manifest=manifest, label_map=label_map)
        self.cache_dir, self.strict = cache_dir, bool(strict)
        self.subjects = assign_folds(list(subjects), fold, num_folds, split_seed)
        self.levels = check_levels(levels)
        self.spacing, self.crop_size = float(spacing), tuple(int(n) for n in crop_size)
        self.window_hu, self.edge_weight, self.flip_lr = tuple(window_hu), float(edge_weight), flip_lr
        self.batch_size, self.num_workers, self.preprocess_workers = batch_size, num_workers, preprocess_workers
        if self.spacing <= 0:
            raise ConfigError("data.spacing", spacing, "a positive number of millimetres")
        if not centre_jitter_mm >= 0:
            raise ConfigError("data.centre_jitter_mm", centre_jitter_mm, "a number of millimetres >= 0")
        if outside_scan not in OUTSIDE_MODES:
            raise ConfigError("data.outside_scan", outside_scan, " or ".join(OUTSIDE_MODES))
        self.outside_scan = outside_scan
        self.margin = int(np.ceil(float(centre_jitter_mm) / self.spacing))
        self.stored_size = tuple(n + 2 * self.margin for n in self.crop_size)
        if len(self.crop_size) != 3 or min(self.crop_size) < 1:
            raise ConfigError("data.crop_size", list(crop_size), "three positive voxel counts [X, Y, Z]")
        if not self.window_hu[0] < self.window_hu[1]:
            raise ConfigError("data.window_hu", list(window_hu), "[low, high] with low < high")
        n = train_samples_per_epoch
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ConfigError("data.train_samples_per_epoch", train_samples_per_epoch, "null or an integer >= 1")
        self.train_samples_per_epoch = train_samples_per_epoch
        self.augmentation = build_augmentation(augmentation, self.window_hu)
        self.test_transform = None  # set by perturb_test: test crops perturbed to measure robustness
        self.crops: dict[str, list[dict]] = {}

    @property
    def source_names(self) -> list[str]:
        """Names of the subjects' sources (data=mix); empty for a single source."""
        return sorted({getattr(s, "source", "") for s in self.subjects} - {""})

    def split_of(self) -> dict[str, list[str]]:
        return {s: [subj.id for subj in self.subjects if subj.split == s] for s in ("train", "val", "test")}

    def check_subjects(self) -> None:
        ids = [s.id for s in self.subjects]
        if len(set(ids)) != len(ids):
            raise SpineError(
                "duplicate subject ids in data.subjects: " + ", ".join(sorted({i for i in ids if ids.count(i) > 1}))
            )
        for split, members in self.split_of().items():
            if not members:
                raise SpineError(f"no subject in the {split} split: need at least one each for train, val and test")

    def prepare_data(self) -> None:
        """Fill the preprocessing cache (rank 0 only under DDP); nothing to do without one."""
        if self.cache_dir:
            self.check_subjects()
            self.fill_cache()

    def fill_cache(self, progress: bool = False) -> int:
        """Compute the missing cache entries of every subject in parallel; returns how many were
        written. Workers write to disk and return a count, so memory does not grow with subjects."""
        cache = CropCache(self.cache_dir)
        args = (self.levels, self.spacing, self.stored_size, self.edge_weight, self.outside_scan)
        todo = [s for s in self.subjects if cache.missing(cache.keys(s, *args[:3], self.outside_scan))]
        written = 0
        with _progress(progress, len(todo)) as advance:
            if self.preprocess_workers > 1 and len(todo) > 1:
                with _process_pool(self.preprocess_workers) as pool:
                    futures = [pool.submit(fill_one, cache.root, s, *args) for s in todo]
                    for future in as_completed(futures):
                        written += future.result()
                        advance()
            else:
                for subject in todo:
                    written += fill_one(cache.root, subject, *args)
                    advance()
        return written

    def _cached_crops(self) -> list[list[dict]]:
        self.fill_cache()  # a no-op after prepare_data; covers direct use of setup()
        cache = CropCache(self.cache_dir)
        results = []
        for subject in self.subjects:
            keys = cache.keys(subject, self.levels, self.spacing, self.stored_size, self.outside_scan)
            records = []
            for level in self.levels:
                record = cache.load(keys[level], self.edge_weight)
                record["subject"] = subject.id  # entries are keyed by content: copies share one
                if record["present"]:
                    records.append(record)
                else:
                    absent_level(subject, level, self.strict)
            results.append(records)
        return results

    def setup(self, stage: str | None = None) -> None:
        if self.crops:
            return
        self.check_subjects()
        if self.cache_dir:
            results = self._cached_crops()
        else:
            args = [(s, self.levels, self.stored_size, self.spacing, self.strict, self.outside_scan)
                    for s in self.subjects]
            if self.preprocess_workers > 1 and len(args) > 1:
                with _process_pool(self.preprocess_workers) as pool:
                    results = list(pool.map(preprocess_subject, *zip(*args, strict=True)))
            else:
                results = [preprocess_subject(*a) for a in args]
        by_id = {s.id: s for s in self.subjects}
        self.crops = {"train": [], "val": [], "test": []}
        for crops in results:
            for crop in crops:
                crop["source"] = getattr(by_id[crop["subject"]], "source", "")
                self.crops[by_id[crop["subject"]].split].append(crop)
        for split, crops in self.crops.items():
            if not crops:
                raise SpineError(f"no crop in the {split} split: none of its subjects has any of {self.levels}")

    def _loader(self, split: str, train: bool) -> DataLoader:
        dataset = CropDataset(
            self.crops[split],
            self.window_hu,
            self.edge_weight,
            flip_lr=self.flip_lr and train,
            margin=self.margin,
            jitter=train,
            transform=self.augmentation if train else self.test_transform if split == "test" else None,
            spacing=self.spacing,
        )
        sampler = self._train_sampler() if train else _eval_sampler(dataset)
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else 1,
            shuffle=train and sampler is None,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def perturb_test(self, perturbation) -> None:
        """Test crops perturbed from now on by an augmentation config (a `test_perturbations` entry,
        every transform with p=1), or clean again with None."""
        self.test_transform = build_augmentation(perturbation, self.window_hu) if perturbation else None

    def _train_sampler(self):
        """Source-weighted sampling of the training crops (data=mix, or a set number per epoch)."""
        crops = self.crops["train"]
        weights = {s.source: s.weight for s in self.subjects if getattr(s, "source", "")}
        if not weights and self.train_samples_per_epoch is None:
            return None  # plain shuffling
        weights = weights or {"": 1.0}
        return source_sampler(crops, weights, self.train_samples_per_epoch or len(crops))

    def train_dataloader(self):
        return self._loader("train", True)

    def val_dataloader(self):
        return self._loader("val", False)

    def test_dataloader(self):
        return self._loader("test", False)


class _progress:
    """A rich progress bar when asked for (preprocess.py), else nothing; yields an `advance()`."""

    def __init__(self, enabled: bool, total: int):
        self.enabled, self.total, self.bar = enabled, total, None

    def __enter__(self):
        if not self.enabled:
            return lambda: None
        from rich.progress import Progress

        self.bar = Progress()
        self.bar.start()
        task = self.bar.add_task("preprocessing subjects", total=self.total)
        return lambda: self.bar.advance(task)

    def __exit__(self, *exc):
        if self.bar:
            self.bar.stop()
