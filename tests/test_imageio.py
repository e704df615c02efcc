"""Image reading: formats, and every kind of bad input as one SpineError naming the file."""

import gzip
import locale
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
from real_ct_trees import CT, DICOM

from spine_lightning.core.errors import SpineError
from spine_lightning.data.file_subject import FileSubject
from spine_lightning.data.imageio import check_same_grid, read_image


def _volume(size=(12, 10, 8), value=0, pixel=sitk.sitkInt16):
    img = sitk.Image(list(size), pixel) + value
    img.SetSpacing((0.8, 0.9, 2.5))
    img.SetOrigin((10.0, -20.0, 30.0))
    return img


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".mha"])
def test_formats_round_trip_geometry_and_pixels(tmp_path, suffix):
    img = _volume(value=7)
    img.SetDirection(tuple(np.diag([-1.0, -1.0, 1.0]).ravel()))
    sitk.WriteImage(img, str(tmp_path / f"x{suffix}"))
    back = read_image(tmp_path / f"x{suffix}")
    assert back.GetSize() == img.GetSize()
    assert np.allclose(back.GetSpacing(), img.GetSpacing()) and np.allclose(back.GetOrigin(), img.GetOrigin())
    assert np.allclose(back.GetDirection(), img.GetDirection())
    assert (sitk.GetArrayViewFromImage(back) == 7).all()
    assert back.GetMetaDataKeys() == ()


def test_missing_file(tmp_path):
    with pytest.raises(SpineError, match=r"missing\.nii\.gz: no such file"):
        read_image(tmp_path / "missing.nii.gz")


def test_truncated_gzip_is_corrupt_not_silently_zero(tmp_path):
    raw = CT.read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(SpineError, match=r"cut\.nii\.gz: corrupt gzip"):
        read_image(tmp_path / "cut.nii.gz")


def test_damaged_gzip_fails_its_crc(tmp_path):
    raw = bytearray(CT.read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 64] = bytes(64)
    (tmp_path / "bad.nii.gz").write_bytes(bytes(raw))
    with pytest.raises(SpineError, match=r"bad\.nii\.gz: corrupt gzip"):
        read_image(tmp_path / "bad.nii.gz")


@pytest.mark.parametrize("name,content", [("notes.nii", b"not an image"),
                                          ("notes.nii.gz", gzip.compress(b"hi", mtime=0))],
                         ids=["text", "gzip_of_text"])
def test_a_file_that_is_not_an_image(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(SpineError, match=rf"{name.replace('.', '[.]')}: not a readable image"):
        read_image(tmp_path / name)


@pytest.mark.parametrize("size", [(12, 10), (12, 10, 1)])
def test_2d_images_are_refused(tmp_path, size):
    sitk.WriteImage(sitk.Image(list(size), sitk.sitkInt16), str(tmp_path / "slice.nrrd"))
    with pytest.raises(SpineError, match=r"slice\.nrrd: is a 2D image"):
        read_image(tmp_path / "slice.nrrd")


def test_nan_in_the_image(tmp_path):
    arr = np.zeros((6, 6, 6), np.float32)
    arr[2, 3, 4] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(tmp_path / "nan.mha"))
    with pytest.raises(SpineError, match=r"nan\.mha: contains NaN"):
        read_image(tmp_path / "nan.mha")


def test_folder_without_dicom(tmp_path):
    with pytest.raises(SpineError, match="holds no DICOM series"):
        read_image(tmp_path)


@pytest.fixture
def keep_locale():
    """SimpleITK's DICOM writer sets the process locale to "C" (ASCII text I/O) and leaves it."""
    saved = locale.setlocale(locale.LC_ALL)
    yield
    locale.setlocale(locale.LC_ALL, saved)


def test_several_dicom_series_list_their_uids_and_one_can_be_chosen(tmp_path, keep_locale):
    files = sorted(DICOM.glob("*.dcm"))
    shutil.copy(files[0], tmp_path / "a1.dcm")
    shutil.copy(files[1], tmp_path / "a2.dcm")
    # A second series written by SimpleITK from fresh pixels, under its own series UID.
    for i in range(2):
        img = sitk.Image([16, 16], sitk.sitkInt16) + 100 * i
        for tag, value in (("0020|000e", "1.2.826.0.1.3680043.2.1125.1.99"), ("0020|0013", str(i + 1)),
                           ("0020|0032", f"0\\0\\{2.0 * i}"), ("0008|0060", "CT")):
            img.SetMetaData(tag, value)
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        writer.SetFileName(str(tmp_path / f"b{i}.dcm"))
        writer.Execute(img)
    uids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(tmp_path))
    assert len(uids) == 2
    with pytest.raises(SpineError, match="holds 2 DICOM series; choose one with series_uid") as err:
        read_image(tmp_path)
    assert all(repr(uid) in str(err.value) for uid in uids)
    chosen = read_image(tmp_path, series_uid="1.2.826.0.1.3680043.2.1125.1.99")
    assert chosen.GetSize()[2] == 2
    with pytest.raises(SpineError, match="no DICOM series '9.9'"):
        read_image(tmp_path, series_uid="9.9")


@pytest.mark.parametrize("what,change", [
    ("size", lambda img: _volume(size=(12, 10, 9))),
    ("spacing", lambda img: (img.SetSpacing((0.8, 0.9, 3.0)), img)[1]),
    ("origin", lambda img: (img.SetOrigin((10.0, -20.0, 35.0)), img)[1]),
    ("direction", lambda img: (img.SetDirection((0, 1, 0, 1, 0, 0, 0, 0, 1)), img)[1]),
])
def test_image_and_label_on_different_grids(what, change):
    image = _volume()
    label = change(_volume(pixel=sitk.sitkUInt8))
    message = rf"lab\.nii\.gz: label {what} .* differs from the image's .*ct\.nii\.gz"
    with pytest.raises(SpineError, match=message):
        check_same_grid(image, label, "ct.nii.gz", "lab.nii.gz")


def test_empty_label_map(tmp_path):
    sitk.WriteImage(_volume(), str(tmp_path / "ct.nii.gz"))
    sitk.WriteImage(_volume(pixel=sitk.sitkUInt8), str(tmp_path / "lab.nii.gz"))
    subject = FileSubject("s1", str(tmp_path / "ct.nii.gz"), label=str(tmp_path / "lab.nii.gz"))
    with pytest.raises(SpineError, match=r"lab\.nii\.gz: label map of subject s1 is empty"):
        subject.load()


def test_label_values_outside_verse_numbering_ask_for_a_label_map(tmp_path):
    sitk.WriteImage(_volume(), str(tmp_path / "ct.nii.gz"))
    sitk.WriteImage(_volume(value=30, pixel=sitk.sitkUInt8), str(tmp_path / "lab.nii.gz"))
    subject = FileSubject("s1", str(tmp_path / "ct.nii.gz"), label=str(tmp_path / "lab.nii.gz"))
    with pytest.raises(SpineError, match=r"lab\.nii\.gz: label values \[30\] are not VerSe numbering"):
        subject.load()
