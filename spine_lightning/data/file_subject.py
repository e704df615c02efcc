"""A subject stored as files: CT plus one label map, or plus one binary mask per level
(TotalSegmentator), optional VerSe centroid JSON. Labels come out in VerSe numbering."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from spine_lightning.core.errors import SpineError
from spine_lightning.data.crops import label_centroids
from spine_lightning.data.imageio import check_same_grid, read_image
from spine_lightning.data.labels import VERSE_LABELS


@dataclass(frozen=True)
class FileSubject:
    id: str
    image: str
    label: str | None = None  # one multi-label map
    structures: tuple[tuple[str, str], ...] = ()  # (level, binary mask file), TotalSegmentator style
    label_map: tuple[tuple[int, int], ...] | None = None  # source value → VerSe value; None = VerSe already
    centroids: str | None = None  # VerSe `_ctd.json`: crop centres instead of the mask's centroids
    split: str | None = None
    series_uid: str | None = None

    def source_files(self) -> list[str]:
        """Every file the subject's crops depend on (their content keys the preprocessing cache)."""
        files = [self.image, *([self.label] if self.label else []), *(f for _, f in self.structures)]
        return files + ([self.centroids] if self.centroids else [])

    def cache_key(self) -> str:
        """The non-file settings that change the crops (file contents are hashed by the cache)."""
        return json.dumps(dict(label_map=self.label_map, series_uid=self.series_uid,
                               structures=[lvl for lvl, _ in self.structures]))

    @property
    def label_source(self) -> str:
        if self.label:
            return self.label
        return str(Path(self.structures[0][1]).parent) if self.structures else self.image

    def load(self) -> tuple[sitk.Image, sitk.Image]:
        image = read_image(self.image, self.series_uid)
        label = self._load_label(image)
        if not np.any(sitk.GetArrayViewFromImage(label)):
            raise SpineError(f"{self.label_source}: label map of subject {self.id} is empty "
                             "(no vertebra label" + (" after data.label_map)" if self.label_map else ")"))
        return image, label

    def _load_label(self, image: sitk.Image) -> sitk.Image:
        if self.label:
            label = read_image(self.label)
            check_same_grid(image, label, self.image, self.label)
            return relabel(label, dict(self.label_map) if self.label_map else None, self.label)
        if not self.structures:
            raise SpineError(f"subject {self.id}: neither a label map nor structure masks were given")
        arr = np.zeros(sitk.GetArrayViewFromImage(image).shape, dtype=np.uint8)
        for level, path in self.structures:
            mask = read_image(path)
            check_same_grid(image, mask, self.image, path)
            arr[sitk.GetArrayViewFromImage(mask) > 0] = VERSE_LABELS[level]
        label = sitk.GetImageFromArray(arr)
        label.CopyInformation(image)
        return label

    def crop_centres(self, label: sitk.Image) -> dict[int, tuple[float, float, float]]:
        """Physical crop centre of every level: the centroid file's where given, else the mask's."""
        centres = label_centroids(label)
        if self.centroids:
            centres.update(read_verse_centroids(self.centroids, label))
        return centres


def relabel(label: sitk.Image, mapping: dict[int, int] | None, path) -> sitk.Image:
    """Label map in VerSe numbering: values through `mapping` (unmapped → 0), or checked as VerSe."""
    arr = sitk.GetArrayViewFromImage(label)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.array_equal(arr, np.round(arr)):
            raise SpineError(f"{path}: label map has non-integer values; a label map holds integers")
    arr = arr.astype(np.int64)
    if arr.min() < 0:
        raise SpineError(f"{path}: label map has negative values")
    if mapping is None:
        unknown = sorted(set(np.unique(arr).tolist()) - {0} - set(VERSE_LABELS.values()))
        if unknown:
            raise SpineError(f"{path}: label values {unknown[:8]} are not VerSe numbering; "
                             "set data.label_map (e.g. data.label_map=totalseg)")
        out = arr.astype(np.uint8)
    else:
        lut = np.zeros(max(int(arr.max()), *mapping) + 1, dtype=np.uint8)
        for source, target in mapping.items():
            lut[source] = target
        out = lut[arr]
    result = sitk.GetImageFromArray(out)
    result.CopyInformation(label)
    return result


def read_verse_centroids(path, label: sitk.Image) -> dict[int, tuple[float, float, float]]:
    """VerSe centroid JSON → physical points (mm). The first entry's axis code (e.g. P, I, R) names
    the orientation the voxel coordinates X, Y, Z refer to, on the scan's own voxel grid."""
    try:
        entries = json.loads(Path(path).read_text())
        code = "".join(entries[0]["direction"])
        oriented = sitk.DICOMOrient(label, code)  # SimpleITK codes name where each axis points, as VerSe's
        return {int(e["label"]): oriented.TransformContinuousIndexToPhysicalPoint((e["X"], e["Y"], e["Z"]))
                for e in entries[1:] if "label" in e}
    except FileNotFoundError:
        raise SpineError(f"{path}: no such file") from None
    except (ValueError, KeyError, IndexError, TypeError, RuntimeError) as err:
        example = '[{"direction": ["P","I","R"]}, {"label": 20, "X": .., "Y": .., "Z": ..}, ...]'
        raise SpineError(f"{path}: not a VerSe centroid file ({type(err).__name__}: {err}); "
                         f"expected {example}") from None
