"""Vertebra centroids in the VerSe `*_ctd.json` convention, converted to physical millimetres.

A VerSe centroid file is a list whose first entry gives the axis code of the voxel coordinates
(nibabel style: each letter names where the axis points, e.g. ["P", "I", "R"]) and whose other
entries are {"label": VerSe value, "X", "Y", "Z"}: continuous voxel indices of the image
reoriented to that axis code.
"""

from __future__ import annotations

import json
from pathlib import Path

import SimpleITK as sitk

from spine_lightning.core.errors import SpineError
from spine_lightning.core.io import write_json
from spine_lightning.data.labels import LUMBAR_LEVELS, VERSE_NAMES

_OPPOSITE = dict(zip("LRAPSI", "RLPAIS", strict=True))


def _itk_code(axis_code) -> str:
    """nibabel codes say where an axis points to, ITK's (DICOMOrient) where it comes from."""
    return "".join(_OPPOSITE[c] for c in axis_code)


def read_centroids(path: str | Path, image: sitk.Image) -> dict[str, tuple[float, float, float]]:
    """Level name → physical centroid (mm) of every vertebra in a VerSe centroid file."""
    path = Path(path)
    try:
        entries = json.loads(path.read_text())
        axis_code = [str(c).upper() for c in entries[0]["direction"]]
        if len(axis_code) != 3 or len({frozenset((c, _OPPOSITE[c])) for c in axis_code}) != 3:
            raise ValueError
        points = {int(e["label"]): (float(e["X"]), float(e["Y"]), float(e["Z"])) for e in entries[1:]}
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        raise SpineError(
            f'{path}: not a VerSe centroid file (a JSON list: {{"direction": ["P","I","R"]}}, '
            'then {"label", "X", "Y", "Z"} entries)'
        ) from None
    oriented = sitk.DICOMOrient(image, _itk_code(axis_code))
    centres = {
        VERSE_NAMES[v]: oriented.TransformContinuousIndexToPhysicalPoint(p)
        for v, p in points.items()
        if v in VERSE_NAMES
    }
    if not any(level in centres for level in LUMBAR_LEVELS):
        raise SpineError(f"{path}: names no lumbar vertebra (labels {sorted(points)}; L1-L5 are 20-24)")
    return centres


def write_centroids(
    path: str | Path,
    centres: dict[str, tuple[float, float, float]],
    image: sitk.Image,
    axis_code=("P", "I", "R"),
) -> None:
    """Write physical centroids as a VerSe centroid file for `image` (the inverse of read_centroids)."""
    from spine_lightning.data.labels import VERSE_LABELS

    oriented = sitk.DICOMOrient(image, _itk_code(axis_code))
    entries: list[dict] = [{"direction": list(axis_code)}]
    for level, point in centres.items():
        x, y, z = oriented.TransformPhysicalPointToContinuousIndex([float(c) for c in point])
        entries.append({"label": VERSE_LABELS[level], "X": x, "Y": y, "Z": z})
    write_json(path, entries)
