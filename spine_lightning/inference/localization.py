"""Weight-free localisation and naming of lumbar vertebrae in a whole CT.

1. Resample the CT onto a coarse canonical grid (2 mm, identity direction: z foot→head).
2. Spine column: the bone that persists over most axial slices; tracked slice by slice and
   smoothed along z into a centre line through the vertebral bodies.
3. Vertebral bodies: along the centre line, the mean HU of a thin cylinder dips in each body's
   cancellous core and peaks at the endplates, so the minima of the smoothed profile are body
   centres (about one per 25-35 mm).
4. Naming from the sacrum upwards: the sacrum is the lowest body whose surroundings hold much
   lateral bone (sacral alae, iliac wings); the bodies above it are L5, L4, ... A scan without a
   sacrum in view is not named at all (no invented vertebrae).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage, signal

from spine_lightning.data.crops import AIR_HU
from spine_lightning.data.scan import Scan, as_scan

GRID_MM = 2.0
BONE_HU = 150.0
CANCELLOUS_HU = 110.0
SOFT_TISSUE_MAX_HU = 60.0
BODY_RADIUS_MM = 8.0  # the profile cylinder: inside the cancellous core of every lumbar body
MIN_BODY_GAP_MM = 18.0
PROMINENCE_HU = 10.0
SACRUM_MIN_HALF_WIDTH_MM = 40.0
SACRUM_MAX_HALF_WIDTH_MM = 150.0  # wider: the whole pelvic ring, not the alae
SACRUM_WIDTH_RATIO = 1.12
COLUMN_RADIUS_MM = 40.0
VERTEBRA_HALF_HEIGHT_MM = 12.0
VERTEBRA_HALF_WIDTH_MM = 45.0
VERTEBRA_BACK_MM = 75.0
MIDLINE_BAND_MM = 25.0
MIN_BODY_AREA_MM2 = 400.0  # above the spinal canal's cross-section
MAX_BODY_AREA_MM2 = 2500.0
BODY_HALF_DEPTH_MM = 15.0  # lumbar bodies are 25-35 mm apart
NAMES_ABOVE_SACRUM = ("L5", "L4", "L3", "L2", "L1")


@dataclass
class Localisation:
    centres: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    bodies_mm: list[tuple[float, float, float]] = field(default_factory=list)  # all found, bottom up
    sacrum_index: int | None = None
    widths_mm: list[float] = field(default_factory=list)  # lateral reach of each body's bone
    note: str = ""

    def report(self) -> dict:
        return dict(
            method="weight-free (bone column, endplate profile, sacrum anchor)",
            note=self.note,
            bodies_found=len(self.bodies_mm),
            sacrum_found=self.sacrum_index is not None,
            bodies_mm=[list(b) for b in self.bodies_mm],
            lateral_reach_mm=self.widths_mm,
            centres_mm={k: list(v) for k, v in self.centres.items()},
        )


def canonical_grid(image: sitk.Image | Scan, spacing: float = GRID_MM) -> sitk.Image:
    """The CT on an identity-direction grid covering its physical extent (array [z, y, x]).

    Built slab by slab: each slab of the scan fills the grid points that fall inside it, so only
    one slab of the full-resolution scan is in memory at a time.
    """
    scan = as_scan(image)
    corners = scan.corners()
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    n = (np.ceil((hi - lo) / spacing).astype(int) + 1).tolist()
    grid, filled = None, None
    for slab in scan.slabs():
        part = sitk.Resample(
            slab,
            n,
            sitk.Transform(),
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
    return out


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


def column_centre_line(bone: np.ndarray, body: np.ndarray, spacing: float) -> np.ndarray | None:
    """(z, 2) array of the vertebral bodies' (y, x) index per slice, or None if no column is found.

    The column is the bone that persists over most slices near the body's left-right midline
    (the pelvis and ribs persist too, but off the midline); in each slice the vertebral body is
    the column's anterior part.
    """
    xx_all = np.arange(bone.shape[2])
    mid_x = float((body.sum(axis=(0, 1)) * xx_all).sum() / max(body.sum(), 1))
    persistence = ndimage.gaussian_filter(bone.mean(axis=0), 6.0 / spacing)
    persistence[:, np.abs(xx_all - mid_x) * spacing > MIDLINE_BAND_MM] = 0
    if persistence.max() < 0.2:
        return None
    cy, cx = np.unravel_index(np.argmax(persistence), persistence.shape)
    yy, xx = np.mgrid[: bone.shape[1], : bone.shape[2]]
    near_column = (yy - cy) ** 2 + (xx - cx) ** 2 <= (COLUMN_RADIUS_MM / spacing) ** 2
    line = np.tile([float(cy), float(cx)], (bone.shape[0], 1))
    weights = np.zeros(bone.shape[0])
    for z in range(bone.shape[0]):
        near = near_column & bone[z]
        if not near.any():
            continue
        front = yy[near].min()  # LPS: y grows to the back, so the body is the smallest y
        body = near & (yy <= front + 2 * BODY_HALF_DEPTH_MM / spacing)
        line[z] = (front + BODY_HALF_DEPTH_MM / spacing, xx[body].mean())
        weights[z] = body.sum()
    # Slices with little bone (discs) follow their neighbours.
    w = ndimage.gaussian_filter1d(weights, 5.0 / spacing) + 1e-6
    return np.stack([ndimage.gaussian_filter1d(line[:, i] * weights, 5.0 / spacing) / w for i in (0, 1)], 1)


def body_profile(hu: np.ndarray, line: np.ndarray, spacing: float) -> np.ndarray:
    """Smoothed mean HU of a thin cylinder along the centre line: low in the bodies' cores.

    Slices at either end of the scan where the cylinder holds no bone at all (soft tissue beyond
    the ends of the column) count as high, like discs, so the last body before them is a minimum.
    """
    radius = BODY_RADIUS_MM / spacing
    yy, xx = np.mgrid[: hu.shape[1], : hu.shape[2]]
    prof = np.array(
        [
            hu[z][(yy - line[z, 0]) ** 2 + (xx - line[z, 1]) ** 2 <= radius**2].mean()
            for z in range(hu.shape[0])
        ]
    )
    soft = prof < SOFT_TISSUE_MAX_HU
    if soft.any() and not soft.all():  # only the runs that reach the ends of the scan
        first, last = np.argmin(soft), len(soft) - np.argmin(soft[::-1])
        prof[:first], prof[last:] = prof.max(), prof.max()
    return ndimage.gaussian_filter1d(prof, 4.0 / spacing)


def vertebra_centroid(
    bone: np.ndarray, line: np.ndarray, z: int, lo: int, hi: int, spacing: float
) -> tuple[float, float, float]:
    """Continuous (x, y, z) index of the bone centroid of the whole vertebra (body and posterior
    elements) whose body centre is on the centre line at slice z, between the discs at slices
    lo and hi (half way to the neighbouring bodies): the crops are centred there."""
    cy, cx = line[z]
    half_z = int(round(VERTEBRA_HALF_HEIGHT_MM / spacing))
    z0 = max(z - half_z, lo)
    box = bone[z0 : min(z + half_z + 1, hi)]
    zz, yy, xx = np.nonzero(box)
    keep = (
        (np.abs(xx - cx) * spacing <= VERTEBRA_HALF_WIDTH_MM)
        & ((yy - cy) * spacing >= -BODY_HALF_DEPTH_MM - 2)
        & ((yy - cy) * spacing <= VERTEBRA_BACK_MM)
    )
    if keep.sum() < 10:
        return float(cx), float(cy), float(z)
    return float(xx[keep].mean()), float(yy[keep].mean()), float(zz[keep].mean() + z0)


def body_minima(prof: np.ndarray, spacing: float) -> np.ndarray:
    """Slices of the vertebral body centres: minima of the profile, spaced by the column's own period.

    A first pass with a permissive spacing estimates the period (median gap between 20 and 50 mm);
    the second keeps one minimum per period and fills a gap of two periods with the deepest point
    in its middle (a body whose dip is shallow, e.g. next to a flat neighbour).
    """
    first, _ = signal.find_peaks(
        -prof, distance=max(1, round(MIN_BODY_GAP_MM / spacing)), prominence=PROMINENCE_HU
    )
    gaps = np.diff(first) * spacing
    gaps = gaps[(gaps >= 20.0) & (gaps <= 50.0)]
    period = float(np.median(gaps)) if len(gaps) else 28.0
    minima, _ = signal.find_peaks(
        -prof, distance=max(1, round(0.7 * period / spacing)), prominence=PROMINENCE_HU
    )
    filled = [int(z) for z in minima[:1]]
    for z in minima[1:]:
        if (z - filled[-1]) * spacing > 1.6 * period:
            lo, hi = filled[-1] + round(0.6 * period / spacing), z - round(0.6 * period / spacing)
            if hi > lo:
                filled.append(lo + int(np.argmin(prof[lo:hi])))
        filled.append(int(z))
    return np.array(filled, dtype=int)


def attached_half_width(bone: np.ndarray, centre_zyx, spacing: float) -> float:
    """How far (mm) the bone attached to the vertebral body at `centre_zyx` reaches to either side.

    Sacral alae are fused to the sacrum and reach further than lumbar transverse processes; ribs
    and iliac wings are separated from the column by joints.
    """
    z, y, x = (int(round(c)) for c in centre_zyx)
    half = max(1, round(6.0 / spacing))
    slab = bone[max(z - half, 0) : z + half + 1]
    parts, _ = ndimage.label(slab)
    yy, xx = np.mgrid[: bone.shape[1], : bone.shape[2]]
    core = (yy - y) ** 2 + (xx - x) ** 2 <= (BODY_RADIUS_MM / spacing) ** 2
    own = np.setdiff1d(np.unique(parts[:, core]), [0])
    attached = np.isin(parts, own).any(axis=(0, 1))
    return float(np.abs(np.flatnonzero(attached) - x).max() * spacing) if attached.any() else 0.0


def sacrum_index(widths: list[float]) -> int | None:
    """Index (bottom up) of the sacrum: the lowest body with at least two bodies above it whose
    attached bone reaches clearly further sideways than theirs (the alae); None if there is none."""
    for i, width in enumerate(widths[:-2]):
        above = float(np.median(widths[i + 1 : i + 4]))
        if (
            SACRUM_MIN_HALF_WIDTH_MM <= width <= SACRUM_MAX_HALF_WIDTH_MM
            and width >= SACRUM_WIDTH_RATIO * above
        ):
            return i
    return None


def localize(image: sitk.Image | Scan) -> Localisation:
    """Lumbar vertebra centroids (mm) of a whole CT, named from the sacrum upwards."""
    grid = canonical_grid(image)
    hu = sitk.GetArrayFromImage(grid)
    bone = bone_mask(hu)
    line = column_centre_line(bone, hu > -400, GRID_MM)
    if line is None:
        return Localisation(note="no spine column found: no vertebra is named")
    minima = body_minima(body_profile(hu, line, GRID_MM), GRID_MM)
    if len(minima) == 0:
        return Localisation(note="no vertebral body found: no vertebra is named")
    bounds = np.concatenate([[0], (minima[1:] + minima[:-1]) // 2, [hu.shape[0]]])
    # Cancellous bone of osteoporotic bodies is as dark as 110 HU: count it towards the centroid,
    # or the dense posterior elements pull the centroid backwards.
    dense = bone | (ndimage.gaussian_filter(hu, 0.7) > CANCELLOUS_HU)
    bodies = [
        grid.TransformContinuousIndexToPhysicalPoint(vertebra_centroid(dense, line, z, lo, hi, GRID_MM))
        for z, lo, hi in zip(minima, bounds[:-1], bounds[1:], strict=True)
    ]
    widths = [attached_half_width(bone, (z, line[z, 0], line[z, 1]), GRID_MM) for z in minima]
    anchor = sacrum_index(widths)
    loc = Localisation(bodies_mm=bodies, sacrum_index=anchor, widths_mm=widths)
    if anchor is None:
        loc.note = (
            f"{len(bodies)} vertebral bodies found but no sacrum to name them from: "
            "no lumbar spine in view, no vertebra is named"
        )
        return loc
    loc.centres["S1"] = bodies[anchor]
    for name, centre in zip(NAMES_ABOVE_SACRUM, bodies[anchor + 1 :], strict=False):
        loc.centres[name] = centre
    loc.note = f"sacrum found; named {', '.join(loc.centres)} from it upwards"
    return loc
