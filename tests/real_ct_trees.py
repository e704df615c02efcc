"""Dataset trees built from the real lumbar CT fixture, in the layouts users bring: VerSe (oblique,
2 mm, centroid JSON), TotalSegmentator (per-structure masks) and a manifest CSV."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from spine_lightning.data.assets import asset_path
from spine_lightning.data.labels import TOTALSEG_IDS, VERSE_LABELS

CT = asset_path("real_ct", "lumbar_ct_3mm.nii.gz")  # shipped with the package
LABEL = asset_path("real_ct", "lumbar_ct_3mm_vertebrae.nii.gz")  # TotalSegmentator multilabel ids
DICOM = Path(__file__).resolve().parent / "data" / "real_ct" / "dicom_series"


def real_ct() -> tuple[sitk.Image, sitk.Image]:
    return sitk.ReadImage(str(CT)), sitk.ReadImage(str(LABEL))


def to_verse(label: sitk.Image) -> sitk.Image:
    arr = sitk.GetArrayFromImage(label)
    out = np.zeros_like(arr, dtype=np.uint8)
    for ts_id, name in TOTALSEG_IDS.items():
        out[arr == ts_id] = VERSE_LABELS[name]
    img = sitk.GetImageFromArray(out)
    img.CopyInformation(label)
    return img


def rotation(axis, angle_rad: float) -> np.ndarray:
    return np.asarray(sitk.VersorTransform(tuple(axis), angle_rad).GetMatrix()).reshape(3, 3)


def oblique_copy(image: sitk.Image, label: sitk.Image, direction: np.ndarray, spacing: float,
                 margin_mm: float = 30.0):
    """The same anatomy on a new grid with `direction` and isotropic `spacing`, covering the lumbar
    labels plus a margin (trilinear for CT, nearest for the label)."""
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(sitk.Cast(label > 0, sitk.sitkUInt8))
    lo = np.full(3, np.inf)
    hi = -lo
    bbox = stats.GetBoundingBox(1)  # index x, y, z, size x, y, z
    for corner in np.ndindex(2, 2, 2):
        idx = [bbox[i] + corner[i] * bbox[3 + i] for i in range(3)]
        p = direction.T @ np.asarray(label.TransformIndexToPhysicalPoint(idx))  # in the new axes
        lo, hi = np.minimum(lo, p), np.maximum(hi, p)
    lo, hi = lo - margin_mm, hi + margin_mm
    size = [int(np.ceil((h - low) / spacing)) + 1 for low, h in zip(lo, hi, strict=True)]
    origin = tuple(direction @ lo)
    args = (size, sitk.Transform(), None, origin, (spacing,) * 3, tuple(direction.ravel()))
    ct = sitk.Resample(image, args[0], args[1], sitk.sitkLinear, *args[3:], -1024.0, sitk.sitkInt16)
    lab = sitk.Resample(label, args[0], args[1], sitk.sitkNearestNeighbor, *args[3:], 0, label.GetPixelID())
    return ct, lab


def write_verse_tree(root: Path, n: int = 3) -> Path:
    """VerSe BIDS tree of `n` oblique 2 mm copies of the real CT, with centroid JSONs (axis code P,I,R)."""
    image, label = real_ct()
    label = to_verse(label)
    for i in range(n):
        direction = rotation((0.2, 1.0, 0.3 * i), 0.25 + 0.1 * i) @ np.diag([-1.0, -1.0, 1.0])
        ct, mask = oblique_copy(image, label, direction, 2.0)
        sub = f"sub-verse{i:03d}"
        (root / "rawdata" / sub).mkdir(parents=True)
        (root / "derivatives" / sub).mkdir(parents=True)
        sitk.WriteImage(ct, str(root / "rawdata" / sub / f"{sub}_ct.nii.gz"))
        sitk.WriteImage(mask, str(root / "derivatives" / sub / f"{sub}_seg-vert_msk.nii.gz"))
        write_centroid_json(root / "derivatives" / sub / f"{sub}_seg-subreg_ctd.json", mask, "PIR")
    return root


def write_centroid_json(path: Path, mask: sitk.Image, code: str) -> None:
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(mask)
    oriented = sitk.DICOMOrient(mask, code)
    entries = [{"direction": list(code)}]
    for value in stats.GetLabels():
        x, y, z = oriented.TransformPhysicalPointToContinuousIndex(stats.GetCentroid(value))
        entries.append({"label": int(value), "X": x, "Y": y, "Z": z})
    path.write_text(json.dumps(entries))


def write_totalseg_tree(root: Path, n: int = 3) -> Path:
    """TotalSegmentator layout: `<subject>/ct.nii.gz` and `segmentations/vertebrae_<level>.nii.gz`."""
    image, label = real_ct()
    arr = sitk.GetArrayFromImage(label)
    for i in range(n):
        folder = root / f"s{i:04d}"
        (folder / "segmentations").mkdir(parents=True)
        sitk.WriteImage(image, str(folder / "ct.nii.gz"))
        for ts_id, name in TOTALSEG_IDS.items():
            if name in ("L1", "L2", "L3", "L4", "L5", "S1"):
                mask = sitk.GetImageFromArray((arr == ts_id).astype(np.uint8))
                mask.CopyInformation(label)
                sitk.WriteImage(mask, str(folder / "segmentations" / f"vertebrae_{name}.nii.gz"))
    return root


def write_manifest(path: Path, rows: list[tuple[str, str, str]], extra: dict | None = None) -> Path:
    """A manifest CSV (paths as given: relative ones resolve against the CSV's folder)."""
    header = ["subject", "image", "label", *(extra or {})]
    lines = [",".join(header)]
    for n, row in enumerate(rows):
        lines.append(",".join([*row, *(str(v[n]) for v in (extra or {}).values())]))
    path.write_text("\n".join(lines) + "\n")
    return path


def real_manifest(folder: Path, n: int = 3) -> Path:
    """Manifest of `n` subjects that all point at the real CT and its TotalSegmentator label map."""
    return write_manifest(folder / "manifest.csv", [(f"real{i}", str(CT), str(LABEL)) for i in range(n)])
