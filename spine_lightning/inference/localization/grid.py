"""Stage 1 of localisation: the CT on a coarse canonical grid (2 mm, identity direction, z foot to
head), the part of it the scan covers, and its bone."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from spine_lightning.data.crops import AIR_HU
from spine_lightning.data.scan import Scan, as_scan

GRID_MM = 2.0
BONE_HU = 150.0
MIN_BODY_AREA_MM2 = 400.0  # above the spinal canal's cross-section
MAX_BODY_AREA_MM2 = 2500.0


def canonical_grid(image: sitk.Image | Scan, spacing: float = GRID_MM) -> sitk.Image:
    """The CT on an identity-direction grid covering its physical extent (array [z, y, x])."""
    return canonical_grid_and_view(image, spacing)[0]


def canonical_grid_and_view(image: sitk.Image | Scan, spacing: float = GRID_MM,
                            turn: sitk.Transform | None = None) -> tuple[sitk.Image, np.ndarray]:
    """The CT on an identity-direction grid covering its physical extent (array [z, y, x]), and
    where the scan covers that grid (a box around an oblique scan holds corners it never saw).
    `turn`: the grid's points are mapped by it into the CT (the CT turned, e.g. by `localize_turned`).

    Built slab by slab: each slab of the scan fills the grid points that fall inside it, so only
    one slab of the full-resolution scan is in memory at a time.
    """
    scan = as_scan(image)
    if turn is None:  # localisation and the preview both use the unturned grid: built once per scan
        return scan.derived(("canonical_grid", float(spacing)), lambda: _on_grid(scan, spacing, None))
    return _on_grid(scan, spacing, turn)


def _on_grid(scan: Scan, spacing: float, turn: sitk.Transform | None) -> tuple[sitk.Image, np.ndarray]:
    corners = scan.corners()
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    n = (np.ceil((hi - lo) / spacing).astype(int) + 1).tolist()
    grid, filled = None, None
    for slab in scan.slabs():
        part = sitk.Resample(
            slab,
            n,
            turn or sitk.Transform(),
            sitk.sitkLinear,
            lo.tolist(),
            [spacing] * 3,
            [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0],
            np.nan,
            sitk.sitkFloat32,
        )
        values = sitk.GetArrayFromImage(part)
        if grid is None:
            grid, filled = values, ~np.isnan(values)
        else:
            new = ~filled & ~np.isnan(values)
            grid[new], filled = values[new], filled | new
    grid[~filled] = AIR_HU
    out = sitk.GetImageFromArray(grid)
    out.SetOrigin(lo.tolist())
    out.SetSpacing([spacing] * 3)
    filled.setflags(write=False)  # it may be shared (see canonical_grid_and_view)
    return out, filled


def bone_mask(hu: np.ndarray) -> np.ndarray:
    """Bone with the body-sized holes of each axial cross-section filled: cortical rings enclose
    their cancellous core, which in osteoporotic bone is barely denser than soft tissue. Smaller
    holes (the spinal canal) and larger ones (rings of ribs or pelvis) stay open."""
    bone = ndimage.gaussian_filter(hu, 0.7) > BONE_HU
    min_hole, max_hole = MIN_BODY_AREA_MM2 / GRID_MM**2, MAX_BODY_AREA_MM2 / GRID_MM**2
    filled = []
    for section in bone:
        holes, n = ndimage.label(ndimage.binary_fill_holes(section) & ~section)
        sizes = ndimage.sum_labels(np.ones_like(holes), holes, np.arange(1, n + 1))
        body_sized = np.isin(holes, 1 + np.flatnonzero((sizes >= min_hole) & (sizes <= max_hole)))
        filled.append(section | body_sized)
    return np.stack(filled)
