"""Reading CT volumes and label maps with SimpleITK: NIfTI, NRRD, MHA files and DICOM series folders.

Only pixels and geometry (origin, spacing, direction) leave this module: every metadata entry,
DICOM tags included, is erased, so patient-identifying tags never reach logs, configs or outputs.
Every failure is a `SpineError` naming the file and what is wrong.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from spine_lightning.core.errors import SpineError

FORMATS = "NIfTI (.nii, .nii.gz), NRRD, MHA or a DICOM series folder"
# Geometry tolerances: header round-off, not a different grid.
SPACING_TOL, ORIGIN_TOL_MM, DIRECTION_TOL = 1e-4, 1e-3, 1e-4


def read_image(path, series_uid: str | None = None) -> sitk.Image:
    """A 3D scalar image from a file or a DICOM series folder, stripped of all metadata."""
    path = Path(path)
    if not path.exists():
        raise SpineError(f"{path}: no such file or folder")
    image = _read_dicom_series(path, series_uid) if path.is_dir() else _read_file(path)
    size = list(image.GetSize())
    if image.GetDimension() != 3 or min(size) < 2:  # a single slice in a 3D header is 2D too
        dim = image.GetDimension() if min(size) > 1 else 2
        raise SpineError(f"{path}: is a {dim}D image of size {size}; a 3D volume is needed")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise SpineError(f"{path}: has {image.GetNumberOfComponentsPerPixel()} components per voxel; "
                         "a scalar (grey-value or label) volume is needed")
    if image.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        if not np.isfinite(sitk.GetArrayViewFromImage(image)).all():
            raise SpineError(f"{path}: contains NaN or infinite voxel values")
    for key in image.GetMetaDataKeys():  # DICOM tags and header notes never leave this module
        image.EraseMetaData(key)
    return image


def _read_file(path: Path) -> sitk.Image:
    # ITK reads a truncated or damaged .gz without complaint (zeros past the damage), so the gzip
    # stream and its CRC are checked first.
    if path.name.endswith(".gz"):
        problem = _gzip_problem(path)
        if problem:
            raise SpineError(f"{path}: corrupt gzip ({problem})")
    check_nifti_finite(path)
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError:
        raise SpineError(f"{path}: not a readable image; expected {FORMATS}") from None


def _gzip_problem(path: Path) -> str | None:
    """Why a .gz file does not decompress, or None if it does (then the content is the problem)."""
    try:
        with gzip.open(path, "rb") as f:
            while f.read(1 << 22):
                pass
    except (OSError, EOFError, zlib.error) as err:
        return str(err) or type(err).__name__
    return None


def check_nifti_finite(path: Path) -> None:
    """Refuse a float NIfTI with NaN or infinite voxels. ITK's NIfTI reader turns NaN into 0, so
    the check after reading cannot see them: the voxels are checked in the file's own bytes."""
    name = path.name.lower()
    if not name.endswith((".nii", ".nii.gz")):
        return
    with (gzip.open if name.endswith(".gz") else open)(path, "rb") as f:
        head = f.read(540)
        for endian in "<>":  # NIfTI-1 (348-byte header) or NIfTI-2 (540), either byte order
            version = {348: 1, 540: 2}.get(struct.unpack(endian + "i", head[:4])[0]) if len(head) >= 4 else None
            if version:
                break
        else:
            return  # not a NIfTI header: ITK says what is wrong
        # (datatype, vox_offset) fields: byte positions and formats of each header version
        (d_at, o_at, o_fmt) = (70, 108, "f") if version == 1 else (12, 168, "q")
        datatype = struct.unpack(endian + "h", head[d_at : d_at + 2])[0]
        offset = int(struct.unpack(endian + o_fmt, head[o_at : o_at + struct.calcsize(o_fmt)])[0])
        dtype = {16: "f4", 64: "f8"}.get(datatype)
        if dtype is None:
            return  # integer voxels are always finite
        dtype = np.dtype(endian + dtype)
        f.seek(offset)
        while chunk := f.read(1 << 24):
            values = np.frombuffer(chunk[: len(chunk) // dtype.itemsize * dtype.itemsize], dtype)
            if not np.isfinite(values).all():
                raise SpineError(f"{path}: contains NaN or infinite voxel values")


def _read_dicom_series(folder: Path, series_uid: str | None) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    warnings = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # GDCM's multi-line warning; we say it in one
    try:
        uids = list(reader.GetGDCMSeriesIDs(str(folder)))
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(warnings)
    if not uids:
        raise SpineError(f"{folder}: folder holds no DICOM series; expected {FORMATS}")
    if series_uid is None:
        if len(uids) > 1:
            raise SpineError(f"{folder}: holds {len(uids)} DICOM series; choose one with series_uid, "
                             f"one of: {', '.join(map(repr, uids))}")
        series_uid = uids[0]
    elif series_uid not in uids:
        raise SpineError(f"{folder}: no DICOM series {series_uid!r}; available: {', '.join(map(repr, uids))}")
    files = reader.GetGDCMSeriesFileNames(str(folder), series_uid)
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOff()  # tags are never read into memory
    reader.LoadPrivateTagsOff()
    try:
        return reader.Execute()
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1] if str(err).strip() else "unreadable"
        raise SpineError(f"{folder}: DICOM series {series_uid!r} could not be read ({first})") from None


def check_same_grid(image: sitk.Image, label: sitk.Image, image_path, label_path) -> None:
    """Image and label must share size, spacing, origin and direction (one voxel grid)."""
    checks = (
        ("size", image.GetSize(), label.GetSize(), 0),
        ("spacing", image.GetSpacing(), label.GetSpacing(), SPACING_TOL),
        ("origin", image.GetOrigin(), label.GetOrigin(), ORIGIN_TOL_MM),
        ("direction", image.GetDirection(), label.GetDirection(), DIRECTION_TOL),
    )
    for name, a, b, tol in checks:
        if not np.allclose(a, b, rtol=0, atol=tol):
            fmt = [round(v, 4) for v in a], [round(v, 4) for v in b]
            raise SpineError(f"{label_path}: label {name} {fmt[1]} differs from the image's {fmt[0]} "
                             f"({image_path}); image and label must share one voxel grid")
