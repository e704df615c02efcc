"""Synthetic CT on real label maps: tissue values in range, deterministic from the seed."""

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from spine_lightning.data.synthesis import Ranges, default_label_maps_dir, synthesize, synthetic_subjects

SHARP = dict(noise_hu=(0.0, 0.0), blur_mm=(0.01, 0.01), slice_blur_mm=(0.01, 0.01))


def _two_vertebrae() -> sitk.Image:
    """L3 above L4: 30 x 24 x 20 mm boxes, 6 mm apart along z, at 1 x 1 x 2 mm."""
    lab = np.zeros((30, 40, 50), np.uint8)  # [z, y, x]
    lab[2:12, 8:32, 10:40] = 24  # L4 (below)
    lab[15:25, 8:32, 10:40] = 23  # L3
    image = sitk.GetImageFromArray(lab)
    image.SetSpacing((1.0, 1.0, 2.0))
    return image


def test_values_follow_the_requested_ranges():
    ranges = Ranges(core_hu=(80.0, 80.0), cortex_hu=(600.0, 600.0), shell_mm=(1.0, 1.0),
                    disc_hu=(90.0, 90.0), **SHARP)
    image, label = synthesize(_two_vertebrae(), 7, ranges)
    hu, lab = sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(label)
    assert image.GetSpacing() == label.GetSpacing() == (1.0, 1.0, 2.0)
    assert set(np.unique(lab)) == {0, 23, 24}
    depth = ndimage.distance_transform_edt(lab > 0, sampling=(2.0, 1.0, 1.0))
    core, shell = (lab > 0) & (depth >= 4.0), (lab > 0) & (depth <= 1.0)
    assert 80 * 0.8 < np.median(hu[core]) < 80 * 1.2  # per vertebra +-10 %, texture
    assert np.median(hu[shell]) > 500
    pad = [round(30.0 / s) for s in (2.0, 1.0, 1.0)]
    gap = np.zeros_like(lab, bool)
    gap[pad[0] + 12: pad[0] + 15, pad[1] + 10: pad[1] + 30, pad[2] + 12: pad[2] + 38] = True
    assert np.all(lab[gap] == 0) and 80 < np.median(hu[gap]) < 100  # the disc
    far = ndimage.distance_transform_edt(lab == 0, sampling=(2.0, 1.0, 1.0)) > 10
    assert np.median(hu[far]) < 70 and hu[far].max() < 150  # soft tissue, fat, air: no bone


def test_osteoporotic_cores_are_reachable():
    image, label = synthesize(_two_vertebrae(), 3, Ranges(core_hu=(50.0, 50.0), **SHARP))
    hu, lab = sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(label)
    depth = ndimage.distance_transform_edt(lab > 0, sampling=(2.0, 1.0, 1.0))
    assert np.median(hu[depth >= 4.0]) < 65


def test_deterministic_from_the_seed(tmp_path):
    sitk.WriteImage(_two_vertebrae(), str(tmp_path / "sub-a_seg-vert_msk.nii.gz"))
    sitk.WriteImage(_two_vertebrae(), str(tmp_path / "sub-b_seg-vert_msk.nii.gz"))
    subjects = synthetic_subjects(tmp_path, num_per_map=2, seed=5, split={"sub-b": "test"})
    assert [s.split for s in subjects] == ["train", "train", "test", "test"]
    assert len({s.id for s in subjects}) == len({s.cache_key() for s in subjects}) == 4
    again = synthetic_subjects(tmp_path, num_per_map=2, seed=5)[0]
    a, la = subjects[0].load()
    b, lb = again.load()
    assert np.array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))
    assert np.array_equal(sitk.GetArrayFromImage(la), sitk.GetArrayFromImage(lb))
    c, _ = subjects[1].load()
    assert np.abs(sitk.GetArrayFromImage(a).astype(float) - sitk.GetArrayFromImage(c)).mean() > 10
    other = synthetic_subjects(tmp_path, num_per_map=1, seed=6)[0]
    assert other.seed != subjects[0].seed and other.cache_key() != subjects[0].cache_key()


REAL = [d for d in (default_label_maps_dir(), Path("/work/shared/data/verse")) if d.is_dir()]


@pytest.mark.skipif(not REAL, reason="no VerSe masks here (package assets or the shared data folder)")
def test_real_mask():
    subject = next(s for s in synthetic_subjects(REAL[0], num_per_map=1) if "tptbox" in s.id)
    image, label = subject.load()
    hu, lab = sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(label)
    assert {21, 22, 23} <= set(np.unique(lab)) and image.GetDirection() == label.GetDirection()
    assert np.median(hu[lab > 0]) > np.median(hu[lab == 0]) + 100
