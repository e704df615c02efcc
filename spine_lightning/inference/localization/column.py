"""Stage 2: the spine column, the bone that persists over most axial slices, tracked slice by slice
and smoothed into a centre line through the vertebral bodies, then followed from its middle slice by
slice (where the centre line, sought around one place, leaves it for the pelvis); along it, the core
profile (the mean HU of a thin disk across the column's axis), the column's extent and lean, and a
body's centroid."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from spine_lightning.data.scan import Scan
from spine_lightning.inference.localization.grid import GRID_MM, bone_mask, canonical_grid_and_view

SOFT_TISSUE_MAX_HU = 60.0
BODY_RADIUS_MM = 8.0  # the profile disk: inside the cancellous core of every lumbar body
AXIS_SMOOTH_MM = 15.0  # the column's axis: the centre line smoothed over about half a vertebra
COLUMN_RADIUS_MM = 40.0
# following the column slice by slice (`follow_column`)
TRACK_RADIUS_MM = 20.0  # the body's front is sought this close to where it was
TRACK_FRONT_MM = 6.0  # the front: the first row with this much bone across (not a speck)
TRACK_MIN_AREA_MM2 = 200.0  # a body's cross-section is 800-1500 mm^2; a disc's rim much less
TRACK_STEP_MM = 4.0  # the body moves at most this much per slice since it was last seen
TRACK_LOST_MM = 40.0  # a vertebra and its disc: no body over this far, and the column has ended
OFF_COLUMN_MM = 30.0  # the centre line this far from the column followed: outside its bodies
VERTEBRA_HALF_HEIGHT_MM = 12.0
VERTEBRA_HALF_WIDTH_MM = 45.0
VERTEBRA_BACK_MM = 75.0
MIDLINE_BAND_MM = 25.0
BODY_HALF_DEPTH_MM = 15.0  # lumbar bodies are 25-35 mm deep
BODY_HALF_WIDTH_MM = 30.0  # lumbar bodies are 40-55 mm wide: a band this wide holds all of one


@dataclass(frozen=True)
class Column:
    """The spine column found on the canonical grid, with what the later stages read from it."""

    grid: sitk.Image
    hu: np.ndarray
    bone: np.ndarray
    view: np.ndarray  # where the scan covers the grid
    line: np.ndarray  # the centre line: (y, x) of the column per z slice
    lateral: tuple  # bone beside the body (`anchors.lateral_parts`)
    disc_candidates: np.ndarray  # z slices of every narrow dip of the core profile
    extent: tuple[int, int]  # first and last slice of the column in view


def column_centre_line(bone: np.ndarray, body: np.ndarray, spacing: float) -> np.ndarray | None:
    """(z, 2) array of the vertebral bodies' (y, x) index per slice, or None if no column is found.

    The column is the bone that persists over most slices near the body's left-right midline
    (the pelvis and ribs persist too, but off the midline); in each slice the vertebral body is
    the column's anterior part, sought within COLUMN_RADIUS_MM of that one place (below the sacrum
    or beside a column leaning in the scan, that reaches into the pelvis: `on_the_column`).
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
    return smooth_line(line, weights, spacing)


def smooth_line(line: np.ndarray, weights: np.ndarray, spacing: float) -> np.ndarray:
    """The centre line smoothed, each slice weighted by the body's bone found there: slices with
    little bone (discs) follow their neighbours."""
    w = ndimage.gaussian_filter1d(weights, 5.0 / spacing) + 1e-6
    return np.stack([ndimage.gaussian_filter1d(line[:, i] * weights, 5.0 / spacing) / w for i in (0, 1)], 1)


def follow_column(bone: np.ndarray, first: np.ndarray, start: int, spacing: float) -> np.ndarray:
    """The centre line followed slice by slice up and down from slice `start` of the first pass:
    in each slice the body is sought in front of where it was (its front within TRACK_RADIUS_MM),
    and taken only when big enough (not a disc's rim or the posterior elements beside a disc) and
    where the body was, give or take TRACK_STEP_MM for each slice since it was last taken. Slices
    where it is not taken hold the line where it was seen last; past TRACK_LOST_MM without a body
    the column has ended, and bone further on (the pelvis below the sacrum) is not followed."""
    yy, xx = np.mgrid[: bone.shape[1], : bone.shape[2]]
    half, r, wide = BODY_HALF_DEPTH_MM / spacing, TRACK_RADIUS_MM / spacing, BODY_HALF_WIDTH_MM / spacing
    line, weights = np.zeros_like(first), np.zeros(len(first))
    for slices in (range(start, len(first)), range(start - 1, -1, -1)):
        point, since = first[start].copy(), 0
        for z in slices:
            line[z], since = point, since + 1
            if since * spacing > TRACK_LOST_MM:  # the column ended (or was lost): not picked up again
                break
            near = ((yy - point[0] + half) ** 2 + (xx - point[1]) ** 2 <= r**2) & bone[z]
            rows = np.flatnonzero(near.sum(axis=1) >= TRACK_FRONT_MM / spacing)  # not a speck
            if not len(rows):
                continue
            body = bone[z] & (np.abs(xx - point[1]) <= wide) & (yy >= rows[0]) & (yy <= rows[0] + 2 * half)
            found = np.array([rows[0] + half, xx[body].mean()])
            if body.sum() * spacing**2 >= TRACK_MIN_AREA_MM2 and (
                    np.hypot(*(found - point)) * spacing <= TRACK_STEP_MM * since):
                line[z], weights[z], point, since = found, body.sum(), found, 0
    return smooth_line(line, weights + 1e-3 * max(weights.max(), 1.0), spacing)


def disk_offsets(line: np.ndarray, spacing: float) -> np.ndarray:
    """(z, k, 3) index offsets of a disk of radius BODY_RADIUS_MM per slice, in the plane across the
    column's axis there (not the axial plane): a disc tilted by the lordosis (20-30 degrees at L5-S1)
    is then crossed at once, not smeared over several slices with both endplates in each."""
    axis = ndimage.gaussian_filter1d(line, AXIS_SMOOTH_MM / spacing, axis=0)  # over a body's staircase
    t = np.stack([np.ones(len(line)), np.gradient(axis[:, 0]), np.gradient(axis[:, 1])], 1)  # (z, y, x)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    e1 = np.array([0.0, 0.0, 1.0]) - t[:, 2:3] * t  # left-right, made square to the axis
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(t, e1)
    r = BODY_RADIUS_MM / spacing
    u, v = np.mgrid[-int(r) : int(r) + 1, -int(r) : int(r) + 1].reshape(2, -1)
    keep = u**2 + v**2 <= r**2
    u, v = u[keep].astype(float), v[keep].astype(float)
    return u[None, :, None] * e1[:, None, :] + v[None, :, None] * e2[:, None, :]


def body_profile(hu: np.ndarray, line: np.ndarray, spacing: float, smooth_mm: float = 4.0) -> np.ndarray:
    """Smoothed mean HU of a thin disk across the column at each slice's point of the centre line:
    low in the bodies' cores and discs.

    Slices at either end of the scan where the disk holds no bone at all (soft tissue beyond
    the ends of the column) count as high, like discs, so the last body before them is a minimum.
    """
    z = np.arange(hu.shape[0], dtype=float)
    centres = np.stack([z, line[:, 0], line[:, 1]], 1)[:, None, :] + disk_offsets(line, spacing)
    prof = ndimage.map_coordinates(hu, centres.reshape(-1, 3).T, order=1, mode="nearest")
    prof = prof.reshape(centres.shape[:2]).mean(axis=1)
    soft = prof < SOFT_TISSUE_MAX_HU
    if soft.any() and not soft.all():  # only the runs that reach the ends of the scan
        first, last = np.argmin(soft), len(soft) - np.argmin(soft[::-1])
        prof[:first], prof[last:] = prof.max(), prof.max()
    return ndimage.gaussian_filter1d(prof, smooth_mm / spacing)


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


def on_the_column(bone: np.ndarray, line: np.ndarray, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """The column followed slice by slice from the middle of the centre line's extent
    (`follow_column`), and the slices where the centre line lies on it (within OFF_COLUMN_MM):
    elsewhere the centre line has left the column for the pelvis, and what it finds there are not
    vertebral bodies."""
    followed = follow_column(bone, line, int(np.mean(column_extent(bone, line, spacing))), spacing)
    return followed, np.hypot(*(line - followed).T) * spacing <= OFF_COLUMN_MM


def column_extent(bone: np.ndarray, line: np.ndarray, spacing: float) -> tuple[int, int]:
    """First and last slice where the column's body (a disk on the centre line) is mostly bone."""
    yy, xx = np.mgrid[: bone.shape[1], : bone.shape[2]]
    radius = BODY_RADIUS_MM / spacing
    fill = np.array([bone[z][(yy - line[z, 0]) ** 2 + (xx - line[z, 1]) ** 2 <= radius**2].mean()
                     for z in range(bone.shape[0])])
    slices = np.flatnonzero(fill >= 0.5)
    return (int(slices[0]), int(slices[-1])) if len(slices) else (0, bone.shape[0] - 1)


def column_on_grid(image: sitk.Image | Scan, turn: sitk.Transform | None = None) -> tuple:
    """The CT on the canonical grid (turned by `turn`), where the scan covers it, its HU array, its
    bone and the column's centre line (None when no column is found)."""
    grid, view = canonical_grid_and_view(image, turn=turn)
    hu = sitk.GetArrayFromImage(grid)
    bone = bone_mask(hu)
    return grid, view, hu, bone, column_centre_line(bone, hu > -400, GRID_MM)


def column_lean(line: np.ndarray, extent: tuple[int, int], grid: sitk.Image) -> tuple[list[float], float]:
    """The column's middle (mm) and its forward/backward lean (degrees): the straight line fitted
    to the centre line's depth in view (the lordosis curves about it). The centre line's left-right
    position follows any bone beside the body, so the sideways lean is measured on the bodies
    found instead (`sideways_lean_deg`)."""
    z = np.arange(extent[0], extent[1] + 1)
    if len(z) < 10:
        return [0.0, 0.0, 0.0], 0.0
    middle = (z[0] + z[-1]) / 2
    centre = grid.TransformContinuousIndexToPhysicalPoint(
        [float(np.interp(middle, z, line[z, 1])), float(np.interp(middle, z, line[z, 0])), middle])
    return list(centre), float(np.degrees(np.arctan(np.polyfit(z, line[z, 0], 1)[0])))  # isotropic grid
