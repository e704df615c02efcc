"""Crops from the real lumbar CT: right level, right place, sane HU, independent of the scan grid."""

import numpy as np
import pytest
import SimpleITK as sitk
from real_ct_trees import DICOM, oblique_copy, real_ct, real_manifest, rotation, to_verse

from spine_lightning.data.crops import crop_pair, label_centroids
from spine_lightning.data.datamodule import preprocess_subject
from spine_lightning.data.file_subject import FileSubject
from spine_lightning.data.imageio import read_image
from spine_lightning.data.labels import VERSE_LABELS
from spine_lightning.data.sources import folder_subjects

LEVELS = ["L2", "L3", "L4", "L5"]
SIZE = (96, 112, 64)


@pytest.fixture(scope="module")
def real_crops(tmp_path_factory):
    subject = folder_subjects(real_manifest(tmp_path_factory.mktemp("manifest")), label_map="totalseg")[0]
    return preprocess_subject(subject, LEVELS, SIZE, 1.0)


def test_real_ct_yields_l2_to_l5_crops_at_1mm_centred_on_the_label(real_crops):
    assert [c["level"] for c in real_crops] == LEVELS
    centre = (np.array(SIZE[::-1]) - 1) / 2.0  # (z, y, x) voxel
    for crop in real_crops:
        assert crop["hu"].shape == SIZE[::-1] and crop["target"].shape == SIZE[::-1]
        assert crop["frame"]["spacing"] == [1.0, 1.0, 1.0]
        com = np.argwhere(crop["target"]).mean(axis=0)  # 1 mm voxels: voxel offset = mm offset
        assert np.all(np.abs(com - centre) <= 1.0), (crop["level"], com, centre)
        # A vertebra of ~30-50 cm^3 at 1 mm: thousands of voxels, not a sliver.
        assert 15_000 < crop["target"].sum() < 90_000, crop["target"].sum()


def test_real_ct_crops_have_sane_hounsfield_units(real_crops):
    for crop in real_crops:
        hu, target = crop["hu"], crop["target"].astype(bool)
        assert -1100 <= hu.min() and hu.max() <= 4000
        assert 100 < np.median(hu[target]) < 800, np.median(hu[target])  # bone inside the vertebra
        assert np.median(hu[~target]) < 150  # soft tissue, fat, air around it


def test_dicom_series_loads_with_its_spacing_and_true_origin_and_no_tags():
    image = read_image(DICOM)
    assert image.GetSize() == (512, 512, 20)
    assert np.allclose(image.GetSpacing(), (0.9765625, 0.9765625, 2.0))
    assert np.allclose(image.GetOrigin(), (-249.51171875, -437.51171875, -804.5), atol=1e-3)
    assert np.allclose(image.GetDirection(), np.eye(3).ravel())
    assert image.GetMetaDataKeys() == ()  # no DICOM tag leaves the reader
    arr = sitk.GetArrayViewFromImage(image)
    assert arr.min() < -900 and arr.max() > 1000  # HU: air and bone, rescale slope/intercept applied


def _crops(image, label):
    centres = label_centroids(label)
    return {lvl: crop_pair(image, label, centres[VERSE_LABELS[lvl]], (48, 56, 32), 1.0)[:2] for lvl in LEVELS}


def test_permuted_and_flipped_axes_give_identical_crops():
    image, label = real_ct()
    label = to_verse(label)
    reference = _crops(image, label)
    # Same voxels, stored in the VerSe P,I,R axis order: only the direction matrix and origin change.
    permuted = _crops(sitk.DICOMOrient(image, "PIR"), sitk.DICOMOrient(label, "PIR"))
    assert sitk.DICOMOrient(image, "PIR").GetDirection() != image.GetDirection()
    for level in LEVELS:
        assert np.array_equal(permuted[level][1], reference[level][1])
        assert np.allclose(permuted[level][0], reference[level][0], atol=1e-2)


def test_rotated_direction_matrix_gives_the_same_anatomy():
    image, label = real_ct()
    label = to_verse(label)
    reference = _crops(image, label)
    direction = rotation((0.3, 1.0, 0.2), 0.4)
    ct, lab = oblique_copy(image, label, direction, 1.5)
    assert not np.allclose(np.asarray(lab.GetDirection()).reshape(3, 3), np.eye(3), atol=0.1)
    rotated = _crops(ct, lab)
    for level in LEVELS:
        value = VERSE_LABELS[level]
        a, b = reference[level][1] == value, rotated[level][1] == value
        dice = 2 * (a & b).sum() / (a.sum() + b.sum())
        assert dice > 0.85, (level, dice)  # two nearest-neighbour resamplings of a 3 mm mask
        corr = np.corrcoef(reference[level][0].ravel(), rotated[level][0].ravel())[0, 1]
        assert corr > 0.9, (level, corr)


def test_levels_absent_from_the_label_are_skipped_with_a_warning_or_fail_when_strict(tmp_path, caplog):
    from spine_lightning.core.errors import SpineError

    subject = folder_subjects(real_manifest(tmp_path), label_map={30: "L2", 29: "L3"})[0]
    crops = preprocess_subject(subject, ["L2", "L3", "L4"], (32, 32, 32), 3.0)
    assert [c["level"] for c in crops] == ["L2", "L3"]
    assert "subject real0 has no L4" in caplog.text
    with pytest.raises(SpineError, match="subject real0 has no L4 in .*vertebrae.nii.gz"):
        preprocess_subject(subject, ["L2", "L4"], (32, 32, 32), 3.0, strict=True)


def test_user_label_map_and_totalseg_preset_agree(tmp_path):
    preset = folder_subjects(real_manifest(tmp_path), label_map="totalseg")[0]
    custom = FileSubject("x", preset.image, label=preset.label, label_map=((30, VERSE_LABELS["L2"]),))
    _, lab_preset = preset.load()
    _, lab_custom = custom.load()
    a, b = sitk.GetArrayViewFromImage(lab_preset), sitk.GetArrayViewFromImage(lab_custom)
    assert np.array_equal(a == 21, b == 21) and (b == 21).sum() > 1000
    assert set(np.unique(b)) == {0, 21}  # unmapped values become background
