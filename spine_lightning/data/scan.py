"""A CT opened for reading in parts: geometry from the header, voxels region by region.

Large uncompressed scans (.nii, .mha, .nrrd) are streamed by SimpleITK's ImageFileReader
(`SetExtractIndex`/`SetExtractSize`), so predict holds only the crops and a coarse copy of the
scan, never the full-resolution CT. A `sitk.Image` already in memory is wrapped the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from spine_lightning.core.errors import SpineError
from spine_lightning.data.imageio import FORMATS, check_nifti_finite, read_image

STREAMED_SUFFIXES = (".nii", ".mha", ".mhd", ".nrrd")  # uncompressed: a region read reads only that region
KEPT_REGIONS = 8  # regions kept by `Scan.reuse_regions`: a few vertebrae's worth, a few MB each


class Scan:
    """Geometry (size, spacing, origin, direction) and a reader of index-space regions."""

    def __init__(self, size, spacing, origin, direction, read_region: Callable[[list, list], sitk.Image]):
        self.size = tuple(int(n) for n in size)
        self.spacing = tuple(float(s) for s in spacing)
        self.origin = tuple(float(o) for o in origin)
        self.direction = tuple(float(d) for d in direction)
        self._read_region = read_region
        self._margin, self._kept = None, []  # see reuse_regions
        self._derived = {}  # see derived

    @classmethod
    def in_memory(cls, image: sitk.Image) -> Scan:
        def read(start, size):
            return image[tuple(slice(s, s + n) for s, n in zip(start, size, strict=True))]

        return cls(image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection(), read)

    @classmethod
    def streamed(cls, path: str | Path) -> Scan:
        """Header only; raises RuntimeError (from SimpleITK) when the file is not an image."""
        header = sitk.ImageFileReader()
        header.SetFileName(str(path))
        header.ReadImageInformation()

        def read(start, size):
            reader = sitk.ImageFileReader()
            reader.SetFileName(str(path))
            reader.SetExtractIndex([int(i) for i in start])
            reader.SetExtractSize([int(n) for n in size])
            try:
                region = reader.Execute()
            except RuntimeError:  # e.g. a file shorter than its header says
                raise SpineError(f"{path}: voxels could not be read (truncated or damaged file)") from None
            _check_finite(region, path)
            return region

        scan = cls(header.GetSize(), header.GetSpacing(), header.GetOrigin(), header.GetDirection(), read)
        scan.dimension, scan.components = header.GetDimension(), header.GetNumberOfComponents()
        return scan

    def region(self, start, size) -> sitk.Image:
        start, size = np.asarray(start, int), np.asarray(size, int)
        for kept_start, kept in self._kept:
            offset = start - kept_start
            if (offset >= 0).all() and (offset + size <= np.asarray(kept.GetSize())).all():
                return sitk.RegionOfInterest(kept, size.tolist(), offset.tolist())  # faster than kept[slices]
        if self._margin is None:
            return self._read_region(start.tolist(), size.tolist())
        lo = np.maximum(start - self._margin, 0)
        hi = np.minimum(start + size + self._margin, np.asarray(self.size))
        self._kept = [*self._kept[-(KEPT_REGIONS - 1):], (lo, self._read_region(lo.tolist(), (hi - lo).tolist()))]
        return self.region(start, size)

    def reuse_regions(self, margin_mm: float) -> None:
        """From now on read each region with `margin_mm` more on every side, keep the last few, and
        cut later regions that lie inside one from memory: a vertebra's crop that moves by up to
        `margin_mm` (refinement, then the final prediction) is read from the file once, not three times."""
        self._margin = np.ceil(float(margin_mm) / np.asarray(self.spacing)).astype(int) + 1  # +1: rounding

    def derived(self, key, make: Callable):
        """`make()`, computed once per scan and `key`: what several stages build from the whole scan
        (the coarse grid that localisation and the preview both draw on) is read from the file once."""
        if key not in self._derived:
            self._derived[key] = make()
        return self._derived[key]

    def grid(self, start=(0, 0, 0), size=None, pixel=sitk.sitkUInt8) -> sitk.Image:
        """An empty image on (part of) this scan's grid; allocates only `size` voxels."""
        ref = sitk.Image([int(n) for n in (size or self.size)], pixel)
        ref.SetSpacing(self.spacing)
        ref.SetDirection(self.direction)
        ref.SetOrigin(self.index_to_physical(np.asarray([start], float))[0].tolist())
        return ref

    def index_to_physical(self, ijk: np.ndarray) -> np.ndarray:
        """Physical points (mm) of continuous indices (N, 3) in x, y, z order."""
        direction = np.asarray(self.direction).reshape(3, 3)
        return np.asarray(self.origin) + (np.asarray(ijk) * np.asarray(self.spacing)) @ direction.T

    def physical_to_index(self, points: np.ndarray) -> np.ndarray:
        direction = np.asarray(self.direction).reshape(3, 3)
        return ((np.asarray(points) - np.asarray(self.origin)) @ direction) / np.asarray(self.spacing)

    def corners(self) -> np.ndarray:
        n = np.asarray(self.size) - 1
        ijk = np.array(np.meshgrid(*[[0, m] for m in n], indexing="ij")).reshape(3, -1).T
        return self.index_to_physical(ijk)

    def slabs(self, max_voxels: int = 32_000_000) -> Iterator[sitk.Image]:
        """The scan in slabs along its third index axis, overlapping by one slice (so that linear
        interpolation between slabs has both neighbours in one slab)."""
        depth = max(2, max_voxels // max(1, self.size[0] * self.size[1]))
        k = 0
        while True:
            n = min(depth, self.size[2] - k)
            yield self._read_region([0, 0, k], [self.size[0], self.size[1], n])  # never kept: too large
            if k + n >= self.size[2]:
                return
            k += n - 1


def _check_finite(image: sitk.Image, path) -> None:
    """The same refusal as `read_image`, for the regions of a streamed file as they are read."""
    if image.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        if not np.isfinite(sitk.GetArrayViewFromImage(image)).all():
            raise SpineError(f"{path}: contains NaN or infinite voxel values")


def open_scan(path: str | Path) -> Scan:
    """A CT as a Scan: uncompressed single files are streamed region by region (a large scan is
    never held whole); compressed files and DICOM series go through `read_image`, the one reader of
    the package (gzip CRC, NaN and series checks, metadata stripped)."""
    path = Path(path)
    if path.is_file() and path.name.lower().endswith(STREAMED_SUFFIXES):
        try:
            scan = Scan.streamed(path)
        except RuntimeError:
            raise SpineError(f"{path}: not a readable image; expected {FORMATS}") from None
        if scan.dimension != 3 or scan.components != 1:
            raise SpineError(f"{path}: not a 3-D single-channel CT (dimension {scan.dimension})")
        check_nifti_finite(path)  # once, before any region is used (ITK reads NaN as 0)
        return scan
    return Scan.in_memory(read_image(path))


def as_scan(image: sitk.Image | Scan) -> Scan:
    return image if isinstance(image, Scan) else Scan.in_memory(image)
