"""The on-disk crop cache: same crops as in memory, computed once, invalidated only where touched,
never half-written; training reads it memory-mapped."""

import shutil

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from real_ct_trees import CT, LABEL, write_manifest

from spine_lightning.data import cache as cache_module
from spine_lightning.data.boundary import boundary_weights
from spine_lightning.data.cache import CropCache
from spine_lightning.data.datamodule import SpineDataModule, preprocess_subject
from spine_lightning.data.file_subject import FileSubject
from spine_lightning.data.sources import folder_subjects

LEVELS, SPACING, SIZE = ["L2", "L3"], 2.0, (32, 40, 24)


def _subjects(tmp_path, n=3):
    rows = []
    for i in range(n):  # real copies (not links): each subject's files can be changed on its own
        shutil.copy(CT, tmp_path / f"ct{i}.nii.gz")
        shutil.copy(LABEL, tmp_path / f"lab{i}.nii.gz")
        rows.append((f"s{i}", f"ct{i}.nii.gz", f"lab{i}.nii.gz"))
    return folder_subjects(write_manifest(tmp_path / "m.csv", rows), label_map="totalseg")


def _fill(cache, subjects, levels=LEVELS, edge_weight=1.1):
    return [cache.fill(s, levels, SPACING, SIZE, edge_weight) for s in subjects]


def _entries(root):
    return sorted(p.name for p in root.glob("*/*") if (p / "meta.json").exists())


def test_cached_crops_equal_the_in_memory_crops(tmp_path):
    subject = _subjects(tmp_path)[0]
    cache = CropCache(tmp_path / "cache")
    assert _fill(cache, [subject]) == [2]
    keys = cache.keys(subject, LEVELS, SPACING, SIZE)
    for crop in preprocess_subject(subject, LEVELS, SIZE, SPACING):
        record = cache.load(keys[crop["level"]], 1.1)
        assert np.array_equal(np.load(record["hu_path"]), crop["hu"])
        assert np.array_equal(np.load(record["target_path"]), crop["target"])
        assert np.array_equal(np.load(record["weights_path"]), boundary_weights(crop["target"], 1.1))
        assert np.allclose(record["centre"], crop["centre"])


def test_second_fill_reads_no_scan_and_identical_content_is_shared(tmp_path, monkeypatch):
    subjects = _subjects(tmp_path)
    cache = CropCache(tmp_path / "cache")
    assert _fill(cache, subjects) == [2, 0, 0]  # the three copies have the same content
    monkeypatch.setattr(FileSubject, "load", lambda self: pytest.fail("a cached subject was read"))
    assert _fill(cache, subjects) == [0, 0, 0]


def test_a_changed_file_or_level_invalidates_only_what_it_touches(tmp_path):
    subjects = _subjects(tmp_path)
    cache = CropCache(tmp_path / "cache")
    _fill(cache, subjects)
    before = _entries(cache.root)
    # Subject s2's label loses L3 (30 → 0 would drop L2; drop TotalSegmentator 29 = L3).
    label = sitk.ReadImage(str(tmp_path / "lab2.nii.gz"))
    arr = sitk.GetArrayFromImage(label)
    arr[arr == 29] = 0
    changed = sitk.GetImageFromArray(arr)
    changed.CopyInformation(label)
    sitk.WriteImage(changed, str(tmp_path / "lab2.nii.gz"))
    assert _fill(cache, subjects) == [0, 0, 2]  # s2: L2 recomputed, L3 now recorded as absent
    assert set(before) <= set(_entries(cache.root))
    assert _fill(cache, subjects, levels=LEVELS + ["L4"]) == [1, 0, 1]  # only the new level


def test_a_new_edge_weight_adds_only_weight_maps(tmp_path):
    subject = _subjects(tmp_path, 3)[0]
    cache = CropCache(tmp_path / "cache")
    _fill(cache, [subject], edge_weight=1.1)
    key = cache.keys(subject, LEVELS, SPACING, SIZE)["L2"]
    hu = cache.entry(key) / "hu.npy"
    stamp = hu.stat().st_mtime_ns
    assert _fill(cache, [subject], edge_weight=1.5) == [0]  # edge weight is not part of the key
    record = cache.load(key, 1.5)
    target = np.load(record["target_path"])
    assert np.array_equal(np.load(record["weights_path"]), boundary_weights(target, 1.5))
    assert np.load(record["weights_path"]).max() == np.float32(1.5) and hu.stat().st_mtime_ns == stamp


def test_an_interrupted_fill_leaves_nothing_behind(tmp_path, monkeypatch):
    subject = _subjects(tmp_path, 3)[0]
    cache = CropCache(tmp_path / "cache")
    real_save, calls = np.save, []

    def failing_save(path, arr, *a, **k):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_save(path, arr, *a, **k)

    monkeypatch.setattr(cache_module.np, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        _fill(cache, [subject])
    leftovers = [p for p in cache.root.rglob("*") if p.is_file() and "digests" not in p.parts]
    assert leftovers == [] and _entries(cache.root) == []
    monkeypatch.setattr(cache_module.np, "save", real_save)
    assert _fill(cache, [subject]) == [2]


def test_datamodule_trains_from_the_memory_mapped_cache(tmp_path):
    subjects = _subjects(tmp_path)
    dm = SpineDataModule(subjects, levels=LEVELS, spacing=SPACING, crop_size=SIZE, edge_weight=1.1,
                         flip_lr=False, preprocess_workers=2, cache_dir=str(tmp_path / "cache"))
    dm.prepare_data()
    dm.setup()
    assert sum(len(v) for v in dm.crops.values()) == 6
    crop = dm.crops["train"][0]
    assert "hu" not in crop and crop["hu_path"].endswith("hu.npy")  # paths, opened per item
    item = dm.train_dataloader().dataset[0]
    target = np.load(crop["target_path"])
    assert np.array_equal(item["target"].numpy(), target)
    assert np.array_equal(item["weights"].numpy(), boundary_weights(target, 1.1))
    assert item["subject"] == crop["subject"] and item["image"].shape == (1, *SIZE[::-1])


def test_centre_jitter_moves_training_crops_and_keeps_evaluation_crops_centred(tmp_path):
    subjects = _subjects(tmp_path)
    common = dict(levels=LEVELS, spacing=SPACING, crop_size=SIZE, edge_weight=1.1, flip_lr=False,
                  preprocess_workers=0, cache_dir=str(tmp_path / "cache"))
    plain = SpineDataModule(subjects, **common)
    jittered = SpineDataModule(subjects, centre_jitter_mm=4.0, **common)  # 2 voxels at 2 mm
    for dm in (plain, jittered):
        dm.prepare_data()
        dm.setup()
    assert jittered.stored_size == tuple(n + 4 for n in SIZE)
    # Evaluation: the middle of the larger stored crop is exactly the plain crop.
    a, b = plain.val_dataloader().dataset[0], jittered.val_dataloader().dataset[0]
    for key in ("image", "target"):
        assert a[key].shape == b[key].shape and torch.equal(a[key], b[key]), key
    # Contour weights agree except on the crop's own faces, where the plain crop cannot see beyond.
    inner = (slice(1, -1),) * 3
    assert torch.equal(a["weights"][inner], b["weights"][inner])
    # Training: network-sized inputs whose vertebra moves by up to 2 voxels per axis.
    plain_train, train = plain.train_dataloader().dataset, jittered.train_dataloader().dataset
    centre = np.argwhere(plain_train[0]["target"].numpy()).mean(axis=0)
    torch.manual_seed(0)
    shifts = []
    for _ in range(20):
        item = train[0]
        assert item["image"].shape == (1, *SIZE[::-1])
        shifts.append(np.argwhere(item["target"].numpy()).mean(axis=0) - centre)
    shifts = np.array(shifts)
    assert np.abs(shifts).max() <= 2.5 and np.abs(shifts).max() >= 1.0
    assert len({tuple(np.round(s, 3)) for s in shifts}) > 5


def test_negative_jitter_is_refused(tmp_path):
    from spine_lightning.core.errors import ConfigError

    with pytest.raises(ConfigError, match="centre_jitter_mm"):
        SpineDataModule(_subjects(tmp_path), centre_jitter_mm=-1.0)


def test_preprocessing_workers_are_spawned_not_forked(tmp_path, monkeypatch):
    """A worker forked after torch's OpenMP threads ran segfaults in libgomp on its first parallel
    op (seen on a 16-core GPU machine): the pool must start fresh interpreters."""
    from concurrent.futures import ProcessPoolExecutor

    from spine_lightning.data import datamodule

    methods = []

    def recording_pool(*args, mp_context=None, **kwargs):
        methods.append(mp_context.get_start_method() if mp_context else "platform default")
        return ProcessPoolExecutor(*args, mp_context=mp_context, **kwargs)

    monkeypatch.setattr(datamodule, "ProcessPoolExecutor", recording_pool)
    torch.ones(1 << 16).add_(1)  # the parent has used torch's thread pool
    dm = SpineDataModule(_subjects(tmp_path), levels=LEVELS, spacing=SPACING, crop_size=SIZE, edge_weight=1.1,
                         flip_lr=False, preprocess_workers=2, cache_dir=str(tmp_path / "cache"))
    dm.prepare_data()
    assert methods == ["spawn"]
    assert len(_entries(CropCache(dm.cache_dir).root)) == len(LEVELS)  # copies of one scan share entries
