"""Stage 4: what each body shows beside it, read on axial slices, and the anchors it makes.
Anchors come only from a body wholly inside the scan (not within a few mm of its first or last slice
or of the field of view's border, and with the field of view reaching 60 mm to either side):
- the sacrum: bone fused to the body reaching sideways (the alae) clearly further than the bodies
  above, an iliac plate (bone tall in z, 55-130 mm from the midline) on either side, and no ribs;
- T12, the lowest rib-bearing vertebra: bone beside the body on both sides, separated from it, not
  a tall plate (an ilium), with no rib-free body above it and a rib-free body below it."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from spine_lightning.inference.localization.bodies import GAP_RANGE
from spine_lightning.inference.localization.column import (
    BODY_HALF_DEPTH_MM,
    VERTEBRA_HALF_HEIGHT_MM,
    Column,
)
from spine_lightning.inference.localization.grid import GRID_MM

OWN_RADIUS_MM = 14.0  # bone meeting a disk this wide on the centre line is the body's: it reaches the
# cortex when the core is too dark to be bone and its ring is not closed in the section
SACRUM_MIN_HALF_WIDTH_MM = 40.0
SACRUM_MAX_HALF_WIDTH_MM = 150.0  # wider: the whole pelvic ring, not the alae
SACRUM_WIDTH_RATIO = 1.12
SACRUM_SCAN_BELOW_MM = 32.0  # the scan must go on this far below a sacrum's S1 body centre
ARCH_BACK_MM = 45.0  # body and arch behind the body's centre; the spinous process beyond does not count
EDGE_MM = 4.0  # a body or arch within this of the scan's first/last slice or its field of view is cut
ANCHOR_VIEW_MM = 60.0  # anchors need the field of view this far to either side of the body
RIB_INNER_MM, RIB_OUTER_MM = 30.0, 110.0  # ribs: lateral bone this far from the body's centre line
RIB_FRONT_MM, RIB_BACK_MM = -25.0, 45.0  # ... and within this front-back band around it
RIB_MIN_AREA_MM2 = 60.0  # per side, seen from above
RIB_OWN_MM = 48.0  # bone joined to the body counts as rib beyond this (transverse processes end before)
RIB_MAX_DROP_MM = 40.0  # a rib's lowest point is less than this below its vertebra's centre
RIB_OWN_LEVEL = 0.6  # a rib whose medial end is more than this many body spacings above a body is not its own
ILIUM_INNER_MM, ILIUM_OUTER_MM = 55.0, 130.0
PLATE_WINDOW_MM = (20.0, 4.0)  # an iliac plate fills this z range (below, above the body centre)...
PLATE_FILL = 0.7  # ... at least this fraction of it, at one spot seen from above
ILIUM_MIN_AREA_MM2 = 100.0  # per side: the plate's spots, seen from above


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
    core = (yy - y) ** 2 + (xx - x) ** 2 <= (OWN_RADIUS_MM / spacing) ** 2
    own = np.setdiff1d(np.unique(parts[:, core]), [0])
    attached = np.isin(parts, own).any(axis=(0, 1))
    return float(np.abs(np.flatnonzero(attached) - x).max() * spacing) if attached.any() else 0.0


def _box(shape, z, y, x, dz, dy0, dy1, dx):
    """Index slices of a box around (z, y, x) (half sizes in voxels) and whether the grid cut it."""
    lo = (int(round(z - dz)), int(round(y + dy0)), int(round(x - dx)))
    hi = (int(round(z + dz)) + 1, int(round(y + dy1)) + 1, int(round(x + dx)) + 1)
    cut = any(a < 0 or b > n for a, b, n in zip(lo, hi, shape, strict=True))
    return tuple(slice(max(a, 0), min(b, n)) for a, b, n in zip(lo, hi, shape, strict=True)), cut


def lateral_parts(bone: np.ndarray, line: np.ndarray, spacing: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bone away from the column (more than 25 mm from its centre line), in 3D connected parts; the
    lowest slice of each part (ribs end near their vertebra, an iliac wing goes on down); and the
    lowest slice of each part's medial end (where it comes within 6 mm of its closest approach to
    the column): a rib meets its own vertebra there, and may slope down past the vertebra below.
    Touching ribs form one part with a medial end at each of their vertebrae."""
    xx = np.arange(bone.shape[2])
    off = np.abs(xx[None, :] - line[:, 1:2]) * spacing  # [z, x]
    parts, n = ndimage.label(bone & (off > 25.0)[:, None, :])
    lowest = np.full(n + 1, bone.shape[0])
    medial = np.full(n + 1, -1.0)
    if n:
        found = ndimage.find_objects(parts)
        lowest[1:] = [f[0].start if f is not None else bone.shape[0] for f in found]
        zz, yv, xv = np.nonzero(parts)
        ids, dist = parts[zz, yv, xv], off[zz, xv]
        inner = ndimage.minimum(dist, ids, np.arange(1, n + 1))
        near = dist <= np.asarray(inner)[ids - 1] + 6.0
        medial[1:] = ndimage.minimum(zz[near].astype(float), ids[near], np.arange(1, n + 1))
    return parts, lowest, medial


def body_evidence(
    bone: np.ndarray,
    view: np.ndarray,
    line: np.ndarray,
    z: int,
    period: float,
    spacing: float,
    lateral: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> dict:
    """What the anchors rest on, for the body centred on the centre line at slice z.

    cut: the body or its arch (+-VERTEBRA_HALF_HEIGHT_MM, ARCH_BACK_MM behind the centre) comes within
    EDGE_MM of the scan's end or field-of-view border (a spinous process past the field of view leaves
    the body to be counted; those of the thoracic spine reach down behind the body below);
    lateral_view: the scan reaches ANCHOR_VIEW_MM to either side; ribs_mm2: per side, area (seen from
    above) of bone beside the body that is not connected to it in the body's slab; plate_mm2: per
    side, area where bone 55-130 mm out is at least a tall bone plate (an iliac wing; ribs are thinner).
    """
    cy, cx = line[z]
    mm = 1.0 / spacing
    box, cut = _box(
        bone.shape,
        z,
        cy,
        cx,
        (VERTEBRA_HALF_HEIGHT_MM + EDGE_MM) * mm,
        (-BODY_HALF_DEPTH_MM - EDGE_MM) * mm,
        (ARCH_BACK_MM + EDGE_MM) * mm,
        30.0 * mm,
    )
    cut = cut or not view[box].all()
    below_mm = float(z * spacing)  # scan below the body's centre (the sacrum goes on down: S2...)
    side_box, side_cut = _box(bone.shape, z, cy, cx, 6.0 * mm, RIB_FRONT_MM * mm, RIB_BACK_MM * mm, ANCHOR_VIEW_MM * mm)
    lateral_view = not side_cut and bool(view[side_box].all())

    # Ribs: bone in the body's slab, beside it, not connected to it there.
    half = max(1, round(0.35 * period * mm))
    z0, z1 = max(z - half, 0), min(z + half + 1, bone.shape[0])
    slab = bone[z0:z1]
    parts, _ = ndimage.label(slab)
    yy, xx = np.mgrid[: bone.shape[1], : bone.shape[2]]
    core = (yy - cy) ** 2 + (xx - cx) ** 2 <= (OWN_RADIUS_MM * mm) ** 2
    own = np.isin(parts, np.setdiff1d(np.unique(parts[:, core]), [0]))
    dx, dy = (xx - cx) * spacing, (yy - cy) * spacing
    beside = slab & (~own | (np.abs(dx) >= RIB_OWN_MM))  # a rib may touch its transverse process
    if lateral is not None:
        lat_parts, lowest, medial = lateral
        # not bone that goes on down past the body below (a pelvis), nor a rib whose medial end is at
        # a vertebra above (the lowest ribs slope down beside the vertebra below their own)
        part = lat_parts[z0:z1]
        beside &= ~(lowest[part] < z - RIB_MAX_DROP_MM * mm) & ~(medial[part] > z + RIB_OWN_LEVEL * period * mm)
    seen = beside.any(axis=0)
    band = (np.abs(dx) >= RIB_INNER_MM) & (np.abs(dx) <= RIB_OUTER_MM) & (dy >= RIB_FRONT_MM) & (dy <= RIB_BACK_MM)
    area = spacing**2

    # Plates (iliac wings): spots where bone fills most of a 24 mm column just below the body's
    # centre; a rib (about 10 mm tall), even one above another, does not.
    p0, p1 = max(z - round(PLATE_WINDOW_MM[0] * mm), 0), min(z + round(PLATE_WINDOW_MM[1] * mm) + 1, bone.shape[0])
    tall = bone[p0:p1].mean(axis=0) >= PLATE_FILL if p1 > p0 else np.zeros(bone.shape[1:], bool)
    wing = (np.abs(dx) >= ILIUM_INNER_MM) & (np.abs(dx) <= ILIUM_OUTER_MM) & (dy >= -40.0) & (dy <= 70.0)
    plate = [float((tall & wing & side).sum() * area) for side in (dx < 0, dx > 0)]
    # Ribs: what is beside the body in its slab, except a plate's crest (bone going on below it).
    below0 = max(z - half - round(12.0 * mm), 0)
    under = bone[below0 : max(z - half, below0 + 1)].mean(axis=0) >= 0.5
    crest = ndimage.binary_dilation(under | tall, iterations=3)
    ribs = [float((seen & band & side & ~crest).sum() * area) for side in (dx < 0, dx > 0)]
    return dict(
        cut=bool(cut),
        lateral_view=lateral_view,
        scan_below_mm=below_mm,
        ribs_mm2=ribs,
        plate_mm2=plate,
        ribs=lateral_view and min(ribs) >= RIB_MIN_AREA_MM2,
        rib_free=lateral_view and max(ribs) < RIB_MIN_AREA_MM2,
        ilia=lateral_view and min(plate) >= ILIUM_MIN_AREA_MM2,
    )


def find_sacrum(evidence: list[dict], widths: list[float]) -> int | None:
    """Index (bottom up) of the sacrum: the lowest uncut body with both iliac plates beside it, no
    ribs, and bone fused to it (the alae) reaching clearly further sideways than the bodies above."""
    for i, (ev, width) in enumerate(zip(evidence, widths, strict=True)):
        above = widths[i + 1 : i + 4]
        if (
            ev["cut"]
            or not ev["lateral_view"]
            or ev["ribs"]
            or not ev["ilia"]
            or not above
            or ev["scan_below_mm"] < SACRUM_SCAN_BELOW_MM
        ):
            continue
        if SACRUM_MIN_HALF_WIDTH_MM <= width <= SACRUM_MAX_HALF_WIDTH_MM and width >= SACRUM_WIDTH_RATIO * float(
            np.median(above)
        ):
            return i
    return None


def find_t12(evidence: list[dict]) -> int | None:
    """Index of T12, the lowest rib-bearing vertebra: uncut, ribs on both sides, a rib-free body
    (no bone beside it on either side) just below it, and no rib-free body above it."""
    for j, ev in enumerate(evidence):
        if not ev["ribs"]:
            continue
        below = evidence[j - 1] if j > 0 else None
        if ev["cut"] or below is None or not below["rib_free"]:
            return None  # the lowest rib-bearing body is not established
        if any(e["rib_free"] for e in evidence[j + 1 :]):
            return None  # ribs below a rib-free body: not a rib column
        return j
    return None


def ilia_below_the_sacrum(column: Column, sacrum_z: int, period_mm: float) -> str:
    """Why the sacrum found at slice `sacrum_z`, with no body found within GAP_RANGE[1] body
    spacings below it, is in doubt ("" if it is not): more than that much column goes on below it,
    and a body a spacing below lies between the iliac wings too, or cannot be seen whole (cut by the
    scan's edge, or the scan too narrow to show the ilia). The one taken for S1 may then be a sixth
    lumbar vertebra, or L5 (its transverse processes against the iliac crests), above an S1 not
    found: with S1 missed, T12 six bodies above it agrees with the count, so T12 cannot settle it."""
    room_mm = (sacrum_z - column.extent[0]) * GRID_MM
    if room_mm <= GAP_RANGE[1] * period_mm:
        return ""
    below = max(int(sacrum_z) - int(round(period_mm / GRID_MM)), 0)
    probe = body_evidence(column.bone, column.view, column.line, below, period_mm, GRID_MM, column.lateral)
    if not probe["cut"] and probe["lateral_view"] and not probe["ilia"]:
        return ""
    return (f"the column goes on {room_mm:.0f} mm below the body taken for the sacrum with no body found there, "
            "and a body there lies between the iliac wings or is not wholly in view: the one taken for the "
            "sacrum may be L5 or a sixth lumbar vertebra above an S1 not found")
