"""What predict is given: the CTs to segment (a file, a DICOM folder, a folder of CTs), their case
names, and an output folder checked for writing before any work starts."""

from __future__ import annotations

from pathlib import Path

import SimpleITK as sitk

from spine_lightning.core.errors import SpineError
from spine_lightning.core.io import atomic_path

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd")


def case_name(path: Path) -> str:
    name = path.name
    for suffix in IMAGE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def find_cases(path: Path) -> list[Path]:
    """One CT per entry: the file, the DICOM folder, or every image file in a folder of CTs."""
    if not path.exists():
        raise SpineError(f"input={path}: no such file or folder")
    if path.is_file() or sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path)):
        return [path]
    found = sorted(
        p
        for p in path.iterdir()
        if p.name.endswith(IMAGE_SUFFIXES) or (p.is_dir() and sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(p)))
    )
    if not found:
        raise SpineError(f"input={path}: folder holds no CT ({', '.join(IMAGE_SUFFIXES)} files or DICOM series)")
    return found


def check_writable(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(out_dir / ".write-test") as tmp:
            tmp.write_bytes(b"")
        (out_dir / ".write-test").unlink()
    except OSError as err:
        raise SpineError(f"output_dir={out_dir}: not writable ({err.strerror})") from None
