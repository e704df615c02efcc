"""Weight-free localisation and naming of lumbar vertebrae in a whole CT.

1. Resample the CT onto a coarse canonical grid (2 mm, identity direction: z foot→head); a column
   leaning forwards or backwards (a patient lying obliquely) is turned upright first, and one whose
   bodies found lean sideways is turned by that lean and analysed again.
2. Spine column: the bone that persists over most axial slices; tracked slice by slice and
   smoothed along z into a centre line through the vertebral bodies.
3. Vertebral bodies: along the centre line, the mean HU of a thin disk across the column's axis
   (the core profile) dips at each disc, narrowly, between two dense endplates, and in an osteoporotic body's core,
   broadly. The minima of the smoothed profile are the body centres, unless they sit on discs
   (dense cores and thick discs: the minima are then the discs, half a vertebra off). When they do,
   or cannot be counted, the bodies lie half way between the discs: the narrow dips that form a
   regular chain at the column's period.
4. Anchors, each from a body fully inside the scan (not within a few mm of its first or last slice
   or of the field of view's border, and with the field of view reaching 60 mm to either side):
   - the sacrum: bone fused to the body reaching sideways (the alae) clearly further than the
     bodies above, an iliac plate (bone tall in z, 55-130 mm from the midline) on either side,
     and no ribs;
   - T12, the lowest rib-bearing vertebra: bone beside the body on both sides, separated from it,
     not a tall plate (an ilium), with no rib-free body above it and a rib-free body below it.
5. Naming: counted from the anchor(s) (S1, L5 ... L1, T12 ... bottom up). Both anchors in view
   must agree (T12 six bodies above S1); a rib-free body where T12 should be (a sixth lumbar
   vertebra, or T12 without ribs) or ribs on a body counted as lumbar leave every body unnamed, and
   so does a sacrum with a body like it just below (S1 in doubt) unless T12 confirms the count,
   and a column whose bodies still lean more than 5° sideways once turned.
   A user's hint (`lowest_level`, `levels_in_view`) names the bodies when no anchor contradicts it.
   A body cut by the scan's edge is named by the count only when it keeps the column's rhythm.
   Unnamed bodies are still returned (bottom up) so that they can be segmented.
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
BODY_RADIUS_MM = 8.0  # the profile disk: inside the cancellous core of every lumbar body
SIDEWAYS_LEAN_MAX_DEG = 5.0  # bodies leaning more than this sideways: turned once more, then not named
COLUMN_TILT_DEG = 10.0  # a column leaning forwards/backwards more than this (lying obliquely) is turned upright first
AXIS_SMOOTH_MM = 15.0  # the column's axis: the centre line smoothed over about half a vertebra
OWN_RADIUS_MM = 14.0  # bone meeting a disk this wide on the centre line is the body's: it reaches the
# cortex when the core is too dark to be bone and its ring is not closed in the section
MIN_BODY_GAP_MM = 18.0
GAP_RANGE = (0.75, 1.35)  # consecutive bodies this many times the median spacing apart: counted as one each
SACRAL_GAP_MAX = 1.6  # S1 to L5, measured on the tilted S1's core: up to this many times the median
PROMINENCE_HU = 10.0
DISC_MAX_MM = 14.0  # a dip of the core profile narrower than this (at half depth) is a disc; a body's core is wider
DISC_PROMINENCE_HU = 15.0
DISC_GAP_MM = (18.0, 50.0)  # consecutive discs of one column are a body apart
DISC_GAP_RATIO = 1.25  # ... and each gap is within this factor of the one below it and of their median
DISC_MIN_HU = 0.0
DISC_DEPTH_CAP_HU = 150.0  # one very deep dip must not outweigh a chain of ordinary discs
PERIOD_MIN_CORRELATION = 0.2  # a column's rhythm shows as an autocorrelation peak at least this high
DISC_SMOOTH_MM = 1.4  # the profile the discs are found in is barely smoothed: a thin disc is one or two slices
SACRUM_MIN_HALF_WIDTH_MM = 40.0
SACRUM_MAX_HALF_WIDTH_MM = 150.0  # wider: the whole pelvic ring, not the alae
SACRUM_WIDTH_RATIO = 1.12
SACRUM_SCAN_BELOW_MM = 32.0  # the scan must go on this far below a sacrum's S1 body centre
COLUMN_RADIUS_MM = 40.0
VERTEBRA_HALF_HEIGHT_MM = 12.0
VERTEBRA_HALF_WIDTH_MM = 45.0
VERTEBRA_BACK_MM = 75.0
MIDLINE_BAND_MM = 25.0
MIN_BODY_AREA_MM2 = 400.0  # above the spinal canal's cross-section
MAX_BODY_AREA_MM2 = 2500.0
BODY_HALF_DEPTH_MM = 15.0  # lumbar bodies are 25-35 mm apart
NAMES_ABOVE_SACRUM = ("L5", "L4", "L3", "L2", "L1")
SPINE_UP = ("S1", "L5", "L4", "L3", "L2", "L1") + tuple(f"T{i}" for i in range(12, 0, -1))  # bottom up
T12_ABOVE_S1 = 6  # bodies from S1 to T12 in a normal spine: five lumbar vertebrae between them
EDGE_MM = 4.0  # a body within this of the scan's first/last slice or its field of view is cut
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


@dataclass
class Localisation:
    centres: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # named only
    bodies_mm: list[tuple[float, float, float]] = field(default_factory=list)  # all found, bottom up
    sacrum_index: int | None = None
    t12_index: int | None = None
    widths_mm: list[float] = field(default_factory=list)  # lateral reach of each body's bone
    evidence: list[dict] = field(default_factory=list)  # per body, bottom up
    named: bool = False
    anchor: str | None = None  # "sacrum", "T12 (lowest rib-bearing vertebra)", "sacrum and T12", "hint"
    counting: str = ""
    confidence: str = "none"  # "high" (two anchors agree), "moderate" (one anchor), "user" (hint)
    note: str = ""
    # how the bodies were placed: "core profile minima", "between discs" or "between discs, S1 below them"
    body_detector: str = ""
    turned_upright_deg: float = 0.0  # the column's lean in the sagittal plane, turned out first (0: upright)
    turned_sideways_deg: float = 0.0  # ... and sideways (measured on the bodies of a first look)
    sideways_lean_deg: float = 0.0  # the bodies' sideways lean as analysed (after any turn)

    def report(self) -> dict:
        return dict(
            method="weight-free (bone column, discs and core profile; sacrum and rib (T12) anchors)",
            bodies_placed=self.body_detector,
            column_turned_upright_deg=round(self.turned_upright_deg, 1),
            column_turned_sideways_deg=round(self.turned_sideways_deg, 1),
            bodies_sideways_lean_deg=round(self.sideways_lean_deg, 1),
            named=self.named,
            note=self.note,
            anchor=self.anchor,
            counting=self.counting,
            confidence=self.confidence,
            bodies_found=len(self.bodies_mm),
            sacrum_found=self.sacrum_index is not None,
            t12_found=self.t12_index is not None,
            bodies_mm=[list(b) for b in self.bodies_mm],
            evidence=self.evidence,
            lateral_reach_mm=self.widths_mm,
            centres_mm={k: list(v) for k, v in self.centres.items()},
            anchor_mm=self.anchors_mm(),
        )

    def anchors_mm(self) -> dict[str, list[float]]:
        """The anchors found (used for the names, or disagreeing): 'sacrum' and/or 'T12' -> centre."""
        found = {"sacrum": self.sacrum_index, "T12 (lowest ribs)": self.t12_index}
        return {k: list(self.bodies_mm[i]) for k, i in found.items() if i is not None}


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


def body_minima(prof: np.ndarray, spacing: float) -> np.ndarray:
    """Slices of the vertebral body centres: minima of the profile, spaced by the column's own period.

    A first pass with a permissive spacing estimates the period (median gap between 20 and 50 mm);
    the second keeps one minimum per period and fills a gap of two periods with the deepest point
    in its middle (a body whose dip is shallow, e.g. next to a flat neighbour).
    """
    first, _ = signal.find_peaks(-prof, distance=max(1, round(MIN_BODY_GAP_MM / spacing)), prominence=PROMINENCE_HU)
    gaps = np.diff(first) * spacing
    gaps = gaps[(gaps >= 20.0) & (gaps <= 50.0)]
    period = float(np.median(gaps)) if len(gaps) else 28.0
    minima, _ = signal.find_peaks(-prof, distance=max(1, round(0.7 * period / spacing)), prominence=PROMINENCE_HU)
    filled = [int(z) for z in minima[:1]]
    for z in minima[1:]:
        if (z - filled[-1]) * spacing > 1.6 * period:
            lo, hi = filled[-1] + round(0.6 * period / spacing), z - round(0.6 * period / spacing)
            if hi > lo:
                filled.append(lo + int(np.argmin(prof[lo:hi])))
        filled.append(int(z))
    return np.array(filled, dtype=int)


def disc_candidates(prof: np.ndarray, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Slices and depths (HU) of the narrow dips of a lightly smoothed core profile: an
    intervertebral disc between two dense endplates. A body's cancellous core, osteoporotic or
    dense, is a dip at least a body's height wide, so width, not depth, tells a disc from a body."""
    dips, props = signal.find_peaks(-prof, prominence=DISC_PROMINENCE_HU, width=0, rel_height=0.5)
    # a disc is soft tissue (60-120 HU); a dip to fat or air is a gap beside the column, not a disc
    disc = (props["widths"] * spacing <= DISC_MAX_MM) & (prof[dips] >= DISC_MIN_HU)
    return dips[disc], props["prominences"][disc]


def disc_chain(prof: np.ndarray, spacing: float, period_mm: float | None) -> np.ndarray:
    """The discs of the column: the longest chain of disc candidates (then the deepest) whose
    consecutive gaps are a body apart (DISC_GAP_MM) and change slowly (DISC_GAP_RATIO), so a dip
    inside a body (a vein, noise) cannot join it without breaking the rhythm. `period_mm`: the
    column's period (`profile_period`, or the spacing of regular core profile minima): the chain's
    spacing must match it, or a chain that skips every other thin disc would pass. None: no chain.
    A chain needs three discs at least: two gaps that agree. Gaps that change slowly may still drift
    (from dips in the cores 46 mm apart to discs 28 mm apart): when the longest chain so fails, the
    longest whose every gap is within DISC_GAP_RATIO of the period is tried."""
    if period_mm is None:
        return np.array([], dtype=int)
    z, depth = disc_candidates(prof, spacing)
    depth = 1.0 + np.minimum(depth, DISC_DEPTH_CAP_HU) / DISC_DEPTH_CAP_HU  # more discs first, deeper second
    for gap_mm in (DISC_GAP_MM, (max(DISC_GAP_MM[0], period_mm / DISC_GAP_RATIO),
                                 min(DISC_GAP_MM[1], period_mm * DISC_GAP_RATIO))):
        chain = np.array(sorted(_longest_chain(z, depth, gap_mm[0] / spacing, gap_mm[1] / spacing)), dtype=int)
        gaps = np.diff(chain) * spacing
        if len(gaps) < 2:  # one gap has no rhythm to check: it may span two thin discs' bodies
            continue
        median = float(np.median(gaps))
        if (gaps.max() <= DISC_GAP_RATIO * median and gaps.min() >= median / DISC_GAP_RATIO
                and period_mm / DISC_GAP_RATIO <= median <= DISC_GAP_RATIO * period_mm):
            return chain
    return np.array([], dtype=int)  # a disc skipped or a false one taken: these discs cannot be counted


def _longest_chain(z: np.ndarray, depth: np.ndarray, lo: float, hi: float) -> list[int]:
    """Slices of the best chain of candidates `z` (summed `depth`) with consecutive gaps in [lo, hi]
    slices, each within DISC_GAP_RATIO of the one before."""
    best, back = {}, {}  # (last, previous) -> summed depth of the best chain ending so; its parent
    for j in range(len(z)):
        best[j, -1], back[j, -1] = depth[j], None
        for i in range(j):
            gap = z[j] - z[i]
            if not lo <= gap <= hi:
                continue
            options = [(best[i, -1], (i, -1))] + [
                (best[i, k], (i, k)) for k in range(i)
                if (i, k) in best and 1 / DISC_GAP_RATIO <= gap / (z[i] - z[k]) <= DISC_GAP_RATIO
            ]
            score, parent = max(options, key=lambda o: o[0])
            best[j, i], back[j, i] = score + depth[j], parent
    key, chain = (max(best, key=best.get) if best else None), []
    while key is not None:
        chain.append(int(z[key[0]]))
        key = back[key]
    return chain


def profile_period(prof: np.ndarray, extent: tuple[int, int], spacing: float) -> float | None:
    """The column's period (mm): the lag of the highest autocorrelation peak of the core profile
    along the column (slow trends removed), between DISC_GAP_MM; None when no peak is clear."""
    x = prof[extent[0] : extent[1] + 1]
    x = x - ndimage.gaussian_filter1d(x, 40.0 / spacing)
    if len(x) < 3 or not np.any(x):
        return None
    ac = np.correlate(x - x.mean(), x - x.mean(), "full")[len(x) - 1 :]
    ac = ac / ac[0]
    peaks = [p for p in signal.find_peaks(ac)[0] if DISC_GAP_MM[0] <= p * spacing <= DISC_GAP_MM[1]]
    best = max(peaks, key=lambda p: ac[p], default=None)
    return float(best * spacing) if best is not None and ac[best] >= PERIOD_MIN_CORRELATION else None


def bodies_between_discs(discs: np.ndarray, extent: tuple[int, int]) -> np.ndarray:
    """Body centre slices: half way between consecutive discs, and one body beyond each end disc
    (half the neighbouring gap away) where the column's bone goes on past that disc: a dip at the
    end of the column (its last endplate against soft tissue or the scan's edge) is no disc."""
    if len(discs) < 2:
        return np.array([], dtype=int)
    below, above = discs[0] - (discs[1] - discs[0]) // 2, discs[-1] + (discs[-1] - discs[-2]) // 2
    middle = [(a + b) // 2 for a, b in zip(discs, discs[1:], strict=False)]
    return np.array(([below] if extent[0] < discs[0] - 1 else []) + middle
                    + ([above] if extent[1] > discs[-1] + 1 else []), dtype=int)


def skipping_none(chain: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """The disc chain, or none when it skips discs: a chain at twice a thin-disc column's period
    (its period misjudged) puts bodies on the discs it left out, and every name counted from it is
    wrong. A disc candidate off the chain at most bodies between its discs means that. A chain whose
    gaps are under twice the shortest body spacing (DISC_GAP_MM) cannot have skipped a disc: the
    bodies either side of it would be too short; a dip half way there is in a core (a vein, noise)."""
    if len(chain) < 2 or np.diff(chain).max() * GRID_MM < 2 * DISC_GAP_MM[0]:
        return chain
    off_chain = np.array([c for c in candidates if np.min(np.abs(chain - c), initial=99) > 2])
    middles = np.array([(a + b) // 2 for a, b in zip(chain, chain[1:], strict=False)])
    if len(middles) and len(off_chain) and not minima_clear_of_discs(middles, off_chain, GRID_MM):
        return np.array([], dtype=int)
    return chain


def minima_clear_of_discs(minima: np.ndarray, discs: np.ndarray, spacing: float) -> bool:
    """False when the profile's minima sit on discs: in a spine with dense cores and thick discs the
    minima are the discs, and every body counted from them would be half a vertebra off. One
    minimum in three may meet a narrow dip (a vein or noise inside a body's core)."""
    on_disc = [bool(np.any(np.abs(discs - m) * spacing <= 6.0)) for m in minima]
    return sum(on_disc) * 3 <= len(minima)


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

    cut: the vertebra (body and posterior elements, +-VERTEBRA_HALF_HEIGHT_MM) comes within EDGE_MM of
    the scan's end or field-of-view border; lateral_view: the scan reaches ANCHOR_VIEW_MM to either
    side; ribs_mm2: per side, area (seen from above) of bone beside the body that is not connected
    to it in the body's slab; plate_mm2: per side, area where bone 55-130 mm out is at least
    a tall bone plate (an iliac wing; ribs are thinner).
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
        (VERTEBRA_BACK_MM * 0.8 + EDGE_MM) * mm,
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


def sacrum_in_doubt(sacrum: int | None, evidence: list[dict], centres_z_mm: list[float] | None) -> int | None:
    """An uncut body between the iliac wings within a body spacing below the sacrum found (its index),
    or None. S1 is the last body above the pelvis's floor that the alae reach from; a body like it
    just below means the one taken for S1 may be L5 (its transverse processes against the iliac
    crests; seen on a real CT turned upright) or the body below is S2: unless T12 confirms the
    count, not counted."""
    if sacrum is None or centres_z_mm is None:
        return None
    gaps = uncut_gaps(centres_z_mm, evidence)
    reach = GAP_RANGE[1] * float(np.median(gaps)) if gaps else 0.0
    return next((k for k in range(sacrum - 1, -1, -1) if not evidence[k]["cut"] and evidence[k]["ilia"]
                 and centres_z_mm[sacrum] - centres_z_mm[k] <= reach), None)


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


def _names_from(base: int, base_name: str, n: int, first: int = 0) -> dict[int, str]:
    """Body index -> name, counting along SPINE_UP from body `base` called `base_name`."""
    offset = SPINE_UP.index(base_name) - base
    return {k: SPINE_UP[k + offset] for k in range(max(first, -offset), n) if k + offset < len(SPINE_UP)}


def _hint_names(hint: dict | None, n: int) -> tuple[dict[int, str] | None, str]:
    if not hint:
        return None, ""
    lowest, in_view = hint.get("lowest_level"), hint.get("levels_in_view")
    if in_view:
        lo, hi = (str(v) for v in in_view)
        if lo not in SPINE_UP or hi not in SPINE_UP:
            return None, f"levels_in_view={list(in_view)}: levels between {SPINE_UP[-1]} and S1"
        a, b = sorted((SPINE_UP.index(lo), SPINE_UP.index(hi)))
        if b - a + 1 != n:
            return None, (f"the hint levels_in_view={list(in_view)} means {b - a + 1} vertebrae but {n} were found")
        return _names_from(0, SPINE_UP[a], n), f"levels_in_view={list(in_view)}"
    if lowest:
        if str(lowest) not in SPINE_UP:
            return None, f"lowest_level={lowest}: a level between {SPINE_UP[-1]} and S1"
        return _names_from(0, str(lowest), n), f"lowest_level={lowest}"
    return None, ""


def sideways_lean_deg(bodies_mm: list, evidence: list[dict], sacrum: int | None) -> float:
    """The column's sideways lean (degrees from the head-foot axis): the straight line fitted to the
    left-right position of the uncut bodies above the sacrum against their height; 0 with fewer
    than three. The bodies' own centroids measure it; the centre line does not (its left-right
    position is pulled by bone beside the body)."""
    above = [b for k, (b, ev) in enumerate(zip(bodies_mm, evidence, strict=True))
             if not ev["cut"] and (sacrum is None or k > sacrum)]
    if len(above) < 3:
        return 0.0
    xyz = np.array(above)
    return float(np.degrees(np.arctan(np.polyfit(xyz[:, 2], xyz[:, 0], 1)[0])))


def uncut_gaps(centres_z_mm: list[float], evidence: list[dict]) -> list[float]:
    """Spacing (mm) of consecutive bodies neither of which is cut by the scan's edge."""
    return [b - a for a, b, ea, eb in zip(centres_z_mm, centres_z_mm[1:], evidence, evidence[1:], strict=False)
            if not (ea["cut"] or eb["cut"])]


def irregular_spacing(centres_z_mm: list[float], evidence: list[dict], sacrum: int | None = None) -> str:
    """Why the bodies found cannot be counted one per vertebra, or "" when they can: consecutive
    uncut bodies that are much closer or further apart than the column's median spacing, or than
    the bodies next to them, mean that a body was split in two or missed, and every name counted
    across that gap would be off by one. Below a recognised sacrum only the fused S2-S5 follow
    (shorter, never named): their spacing says nothing about the count upwards. The gap from S1 to
    L5 is checked on its own, against SACRAL_GAP_MAX: S1 tilts by the sacral slope, so its core's
    minimum on the head-foot profile lies lower than its centre; a missed L5 would double the gap."""
    first = sacrum or 0
    gaps = uncut_gaps(centres_z_mm[first:], evidence[first:])
    s1_l5_uncut = sacrum is not None and sacrum + 1 < len(evidence) and not (
        evidence[sacrum]["cut"] or evidence[sacrum + 1]["cut"])
    sacral = gaps.pop(0) if s1_l5_uncut else None  # uncut_gaps' first gap is then S1-L5
    if len(gaps) < 2:
        return ""
    median = float(np.median(gaps))
    steps = [b / a for a, b in zip(gaps, gaps[1:], strict=False)]  # spacing changes slowly along a column
    if (min(gaps) < GAP_RANGE[0] * median or max(gaps) > GAP_RANGE[1] * median
            or max(steps) > GAP_RANGE[1] or min(steps) < 1 / GAP_RANGE[1]
            or (sacral is not None and not GAP_RANGE[0] * median <= sacral <= SACRAL_GAP_MAX * median)):
        every = [g for g in (sacral, *gaps) if g is not None]
        return (f"the bodies found are irregularly spaced ({min(every):.0f} to {max(every):.0f} mm apart, median "
                f"{median:.0f} mm): a body was missed or split, so counting from an anchor would be wrong")
    return ""


def spaced_like_the_rest(centres_z_mm: list[float], evidence: list[dict]) -> list[bool]:
    """Per body: may it carry the name counted for it? An uncut body may. A body cut by the scan's
    edge is never an anchor, and is named only when it is as far from its neighbours as the uncut
    bodies are from each other (GAP_RANGE of their median spacing): a fragment, or a dip beyond
    the last body, breaks that rhythm and stays unnamed."""
    gaps = uncut_gaps(centres_z_mm, evidence)
    median = float(np.median(gaps)) if gaps else None
    ok = []
    for k, ev in enumerate(evidence):
        near = [abs(centres_z_mm[j] - centres_z_mm[k]) for j in (k - 1, k + 1) if 0 <= j < len(evidence)]
        ok.append(not ev["cut"] or (median is not None and bool(near)
                                    and all(GAP_RANGE[0] * median <= g <= GAP_RANGE[1] * median for g in near)))
    return ok


def with_partial_ends(centres_z: np.ndarray, extent: tuple[int, int], discs: np.ndarray) -> np.ndarray:
    """The body centre slices with one more at either end where the next vertebra is partly in
    view, cut by the scan's edge: a disc half a body spacing past the end body, and the column's
    bone going on past that disc. Its centre is put one spacing on (it may lie outside the scan)."""
    if len(centres_z) < 2:
        return np.asarray(centres_z, dtype=int)
    step = int(np.median(np.diff(centres_z)))

    def disc_then_bone(start: int, sign: int, edge: int) -> bool:
        past = sign * (discs - start)
        return any(0.3 * step <= d <= 0.7 * step and sign * (edge - (start + sign * d)) > 1 for d in past)

    below = [centres_z[0] - step] if disc_then_bone(centres_z[0], -1, extent[0]) else []
    above = [centres_z[-1] + step] if disc_then_bone(centres_z[-1], 1, extent[1]) else []
    return np.array(below + list(centres_z) + above, dtype=int)


def column_extent(bone: np.ndarray, line: np.ndarray, spacing: float) -> tuple[int, int]:
    """First and last slice where the column's body (a disk on the centre line) is mostly bone."""
    yy, xx = np.mgrid[: bone.shape[1], : bone.shape[2]]
    radius = BODY_RADIUS_MM / spacing
    fill = np.array([bone[z][(yy - line[z, 0]) ** 2 + (xx - line[z, 1]) ** 2 <= radius**2].mean()
                     for z in range(bone.shape[0])])
    slices = np.flatnonzero(fill >= 0.5)
    return (int(slices[0]), int(slices[-1])) if len(slices) else (0, bone.shape[0] - 1)


def uncovered_column(minima: np.ndarray, extent: tuple[int, int], period_mm: float, spacing: float,
                     sacrum_found: bool) -> str:
    """Why the bodies found do not cover the column in view ("" when they do): a stretch of column
    longer than GAP_RANGE[1] periods with no body found beyond the lowest or highest body means the
    body detector failed on this scan, so none of its counts is trusted. Below a recognised sacrum
    the column goes on as S2-S5, which are not bodies to find."""
    lo, hi = extent
    limit = GAP_RANGE[1] * period_mm
    below, above = (minima[0] - lo) * spacing, (hi - minima[-1]) * spacing
    if (below > limit and not sacrum_found) or above > limit:
        where, mm = ("below the lowest", below) if below > limit and not sacrum_found else ("above the highest", above)
        return (f"{mm:.0f} mm of spinal column {where} body found hold no body (bodies are about "
                f"{period_mm:.0f} mm apart): the body detector failed on this scan")
    return ""


def name_bodies(evidence: list[dict], widths: list[float], hint: dict | None = None,
                centres_z_mm: list[float] | None = None) -> dict:
    """Names of the bodies (index -> name) and what they rest on; no names unless the evidence holds.
    `centres_z_mm`: the bodies' heights (foot to head), for the spacing check."""
    n = len(evidence)
    sacrum, t12 = find_sacrum(evidence, widths), find_t12(evidence)
    out = dict(names={}, sacrum=sacrum, t12=t12, anchor=None, counting="", confidence="none", reason="")
    spacing = irregular_spacing(centres_z_mm, evidence, sacrum) if centres_z_mm is not None else ""
    if spacing:
        out.update(reason=spacing, irregular=True)
        return out
    below = sacrum_in_doubt(sacrum, evidence, centres_z_mm)
    if below is not None and (t12 is None or t12 - sacrum != T12_ABOVE_S1):  # T12 in its place settles it
        out["reason"] = (f"body {below + 1}, a body spacing below the one taken for the sacrum (body {sacrum + 1}), "
                         "also lies between the iliac wings: which of them is S1 is not clear")
        return out
    if sacrum is None and any(ev["ilia"] and not ev["cut"] and ev["scan_below_mm"] >= SACRUM_SCAN_BELOW_MM
                              for ev in evidence):
        # the pelvis and the scan below it are in view, so the sacrum should be too: unrecognised,
        # the lowest body in view may be S1 or L5
        out["reason"] = ("the pelvis is in view but no body in it is recognised as the sacrum: the lowest "
                         "bodies cannot be counted")
        return out
    rib_bodies = [k for k, ev in enumerate(evidence) if ev["ribs"]]
    by_anchor = None
    if sacrum is not None and t12 is not None:
        if t12 - sacrum != T12_ABOVE_S1:
            out["reason"] = (
                f"the anchors disagree: T12 (lowest ribs) is {t12 - sacrum} bodies above the sacrum, "
                f"a normal spine has {T12_ABOVE_S1} (a sixth lumbar vertebra, a rib on L1, or a missed body)"
            )
            return out
        by_anchor = _names_from(sacrum, "S1", n, first=sacrum)
        out.update(
            anchor="sacrum and T12 (lowest rib-bearing vertebra)",
            confidence="high",
            counting=f"S1 at body {sacrum + 1} and T12 at body {t12 + 1} (from the foot) agree: five lumbar "
            "vertebrae between them",
        )
    elif sacrum is not None:
        lumbar_ribs = [k for k in rib_bodies if sacrum < k < sacrum + T12_ABOVE_S1]
        if lumbar_ribs:
            out["reason"] = (
                f"ribs on body {lumbar_ribs[0] + 1}, which counting from the sacrum would be "
                f"{SPINE_UP[lumbar_ribs[0] - sacrum]}: a transitional spine, the count does not fit"
            )
            return out
        t12_pos = sacrum + T12_ABOVE_S1
        if (
            t12_pos < n
            and evidence[t12_pos]["lateral_view"]
            and not evidence[t12_pos]["cut"]
            and not evidence[t12_pos]["ribs"]
        ):
            out["reason"] = (
                "six rib-free vertebrae above the sacrum (a sixth lumbar vertebra, or T12 without "
                "ribs): the count does not fit"
            )
            return out
        by_anchor = _names_from(sacrum, "S1", n, first=sacrum)
        out.update(
            anchor="sacrum",
            confidence="moderate",
            counting=f"S1 at body {sacrum + 1} from the foot; L5, L4, ... counted upwards, one per body",
        )
    elif t12 is not None:
        s1_pos = t12 - T12_ABOVE_S1
        if s1_pos >= 0 and evidence[s1_pos]["lateral_view"] and not evidence[s1_pos]["cut"]:
            out["reason"] = (
                "the body six below T12 (lowest ribs), where S1 should be, is not a sacrum "
                "(a sixth lumbar vertebra, or a rib on L1): the count does not fit"
            )
            return out
        by_anchor = _names_from(t12, "T12", n, first=max(t12 - T12_ABOVE_S1 + 1, 0))
        out.update(
            anchor="T12 (lowest rib-bearing vertebra)",
            confidence="moderate",
            counting=f"T12 at body {t12 + 1} from the foot; L1 ... L5 counted downwards, T11 ... upwards",
        )
    hinted, hint_text = _hint_names(hint, n)
    if by_anchor is not None:
        if hinted is not None and any(hinted.get(k, v) != v for k, v in by_anchor.items()):
            out.update(
                names={},
                anchor=None,
                confidence="none",
                counting="",
                reason=f"the hint {hint_text} contradicts the {out['anchor']} anchor",
            )
            return out
        out["names"] = by_anchor
        if hinted is not None:
            out["counting"] += f"; the hint {hint_text} agrees"
        return out
    if hinted is not None:
        wrong = [k for k in rib_bodies if hinted.get(k, "T").startswith(("L", "S"))]
        if wrong:
            out["reason"] = (
                f"the hint {hint_text} contradicts the ribs on body {wrong[0] + 1} (named {hinted[wrong[0]]})"
            )
            return out
        out.update(
            names=hinted,
            anchor="hint",
            confidence="user",
            counting=f"from the user's hint {hint_text}, one name per body found, bottom up",
        )
        return out
    out["reason"] = hint_text or (
        "no anchor: no sacrum (alae and iliac wings) and no lowest rib-bearing vertebra fully in view"
        if n
        else "no vertebral body found"
    )
    return out


def localize(image: sitk.Image | Scan, hint: dict | None = None) -> Localisation:
    """Vertebra centroids (mm) of a whole CT, named from the anchors in view (or the user's `hint`:
    `lowest_level` or `levels_in_view`), or left unnamed with the reason why.

    Bodies are first the minima of the smoothed core profile, unless those sit on discs; when they
    cannot be counted (irregular, or leaving part of the column without a body), or sit on discs,
    the bodies are placed between the discs found along the column instead."""
    grid, view, hu, bone, line = column_on_grid(image)
    if line is None:
        return Localisation(note="no spine column found: no vertebra is named")
    centre, forward = column_lean(line, column_extent(bone, line, GRID_MM), grid)
    forward = forward if abs(forward) >= COLUMN_TILT_DEG else 0.0
    loc = (localize_on_grid(grid, hu, bone, line, view, hint) if forward == 0.0
           else localize_turned(image, centre, forward, 0.0, hint))
    if abs(loc.sideways_lean_deg) > SIDEWAYS_LEAN_MAX_DEG:  # measured on the bodies found: turn that too
        loc = localize_turned(image, centre, forward, loc.sideways_lean_deg, hint)
    return loc


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


def localize_turned(image: sitk.Image | Scan, centre, forward_deg: float, sideways_deg: float,
                    hint: dict | None) -> Localisation:
    """A patient lying obliquely: `localize` on the CT turned about `centre` so that a column leaning
    `forward_deg` and `sideways_deg` stands upright (the anchors are read on axial slices), resampled
    once from the CT; the points found are turned back."""
    turn = sitk.Euler3DTransform()
    turn.SetCenter([float(c) for c in centre])
    turn.SetRotation(-np.radians(forward_deg), np.radians(sideways_deg), 0.0)
    grid, view, hu, bone, line = column_on_grid(image, turn)
    if line is None:
        return Localisation(note="no spine column found: no vertebra is named")
    loc = localize_on_grid(grid, hu, bone, line, view, hint)
    loc.bodies_mm = [turn.TransformPoint(p) for p in loc.bodies_mm]
    loc.centres = {k: turn.TransformPoint(p) for k, p in loc.centres.items()}
    loc.turned_upright_deg, loc.turned_sideways_deg = forward_deg, sideways_deg
    return loc


def localize_on_grid(grid: sitk.Image, hu: np.ndarray, bone: np.ndarray, line: np.ndarray, view: np.ndarray,
                     hint: dict | None) -> Localisation:
    """`localize` on the canonical grid, the column's centre line found."""
    minima = body_minima(body_profile(hu, line, GRID_MM), GRID_MM)
    fine = body_profile(hu, line, GRID_MM, DISC_SMOOTH_MM)
    candidates, extent = disc_candidates(fine, GRID_MM)[0], column_extent(bone, line, GRID_MM)
    column = (grid, hu, bone, view, line, lateral_parts(bone, line, GRID_MM), candidates, extent)
    gaps = np.diff(minima) * GRID_MM
    relative = gaps / np.median(gaps) if len(gaps) else np.zeros(1)
    regular = GAP_RANGE[0] <= relative.min() and relative.max() <= GAP_RANGE[1]
    # the column's period: from the minima when they are regular, else from the profile's rhythm
    # when it is clear, else (a noisy profile) from the minima still
    period = None if regular else profile_period(fine, extent, GRID_MM)
    period = period or (float(np.median(gaps)) if len(gaps) else None)
    discs = skipping_none(disc_chain(fine, GRID_MM, period), candidates)
    on_discs = not minima_clear_of_discs(minima, discs if len(discs) else candidates, GRID_MM)
    loc = None
    if len(minima) and not on_discs:
        loc, counted = locate_bodies(column, minima, "core profile minima", hint)
        if counted:
            return loc
    if len(discs):
        alt, alt_counted = between_discs_down_to_sacrum(column, discs, hint)
        if alt_counted or loc is None:
            loc = alt
    if loc is None:  # the minima may be discs, half a vertebra off: segmented, never named
        loc, _ = locate_bodies(column, minima, "core profile minima", hint, not_named=(
            "the core profile's minima sit on discs and the discs do not form a regular chain, so the "
            "bodies cannot be counted"))
    return loc


def between_discs_down_to_sacrum(column: tuple, discs: np.ndarray, hint: dict | None) -> tuple[Localisation, bool]:
    """`locate_bodies` on the bodies between the discs. When more than GAP_RANGE[1] disc spacings of
    column lie below the lowest of them, the disc under it was missed (L5/S1 thin and tilted by the
    sacral slope): one more body is tried a disc spacing below, kept only if it is recognised as the
    sacrum and the bodies can then be counted; a body placed without its disc is never named otherwise."""
    extent = column[-1]
    centres = bodies_between_discs(discs, extent)
    loc, counted = locate_bodies(column, centres, "between discs", hint)
    step = int(np.median(np.diff(discs)))
    if counted or len(centres) == 0 or (centres[0] - extent[0]) * GRID_MM <= GAP_RANGE[1] * step * GRID_MM:
        return loc, counted
    tried = np.r_[centres[0] - step, centres]
    alt, alt_counted = locate_bodies(column, tried, "between discs, S1 below them", hint)
    added_is_lowest = with_partial_ends(tried, extent, column[6])[0] == tried[0]  # no cut body put below it
    return (alt, alt_counted) if alt_counted and added_is_lowest and alt.sacrum_index == 0 else (loc, counted)


def ilia_below_the_lowest_sacrum(column: tuple, centres_z: np.ndarray, period_mm: float) -> str:
    """Why the sacrum found at the lowest body is in doubt ("" if it is not): more than GAP_RANGE[1]
    body spacings of column go on below it, and a body a spacing below lies between the iliac wings
    too, or cannot be seen whole (cut by the scan's edge, or the scan too narrow to show the ilia).
    The one taken for S1 may then be a sixth lumbar vertebra whose disc below went unseen (its
    transverse processes against the iliac crests): with S1 missed, T12 six bodies above it agrees
    with the count, so T12 cannot settle it."""
    grid, hu, bone, view, line, lateral, discs, extent = column
    if (centres_z[0] - extent[0]) * GRID_MM <= GAP_RANGE[1] * period_mm:
        return ""
    below = max(int(centres_z[0]) - int(round(period_mm / GRID_MM)), 0)
    probe = body_evidence(bone, view, line, below, period_mm, GRID_MM, lateral)
    if not probe["cut"] and probe["lateral_view"] and not probe["ilia"]:
        return ""
    return (f"the column goes on {(centres_z[0] - extent[0]) * GRID_MM:.0f} mm below the body taken for the sacrum, "
            "and a body there lies between the iliac wings or is not wholly in view: the one taken for the "
            "sacrum may be a sixth lumbar vertebra above an S1 not found")


def locate_bodies(column: tuple, centres_z: np.ndarray, detector: str, hint: dict | None,
                  not_named: str = "") -> tuple[Localisation, bool]:
    """Centroids, anchors and names of the bodies centred at slices `centres_z` of the column, and
    whether those bodies could be counted (regularly spaced, covering the column in view).
    `not_named`: the reason why these bodies must not be named, whatever the anchors say."""
    grid, hu, bone, view, line, lateral, discs, extent = column
    if len(centres_z) == 0:
        return Localisation(note="no vertebral body found: no vertebra is named"), False
    found = centres_z
    nominal = with_partial_ends(found, extent, discs)  # may lie past the scan's ends
    centres_z = np.clip(nominal, 0, hu.shape[0] - 1)
    bounds = np.clip(np.concatenate([[0], (nominal[1:] + nominal[:-1]) // 2, [hu.shape[0]]]), 0, hu.shape[0])
    # Cancellous bone of osteoporotic bodies is as dark as 110 HU: count it towards the centroid,
    # or the dense posterior elements pull the centroid backwards.
    dense = bone | (ndimage.gaussian_filter(hu, 0.7) > CANCELLOUS_HU)
    bodies = [
        grid.TransformContinuousIndexToPhysicalPoint(vertebra_centroid(dense, line, z, lo, hi, GRID_MM))
        for z, lo, hi in zip(centres_z, bounds[:-1], bounds[1:], strict=True)
    ]
    widths = [attached_half_width(bone, (z, line[z, 0], line[z, 1]), GRID_MM) for z in centres_z]
    gaps = np.diff(found) * GRID_MM
    period = float(np.median(gaps)) if len(gaps) else 28.0
    evidence = [body_evidence(bone, view, line, int(z), period, GRID_MM, lateral) for z in centres_z]
    named = name_bodies(evidence, widths, hint, centres_z_mm=[float(z) * GRID_MM for z in centres_z])
    uncovered = uncovered_column(found, extent, period, GRID_MM, named["sacrum"] is not None) or (
        ilia_below_the_lowest_sacrum(column, centres_z, period) if named["sacrum"] == 0 else "")
    lean = sideways_lean_deg(bodies, evidence, named["sacrum"])
    if abs(lean) > SIDEWAYS_LEAN_MAX_DEG and named["names"]:
        named.update(names={}, anchor=None, counting="", confidence="none", reason=(
            f"the column leans {abs(lean):.0f}° sideways in the scan: the anchors and the discs are read on "
            "axial slices, which cut such a column obliquely, so the count is not trusted"))
    counted = not (uncovered or named.get("irregular"))
    if (uncovered or not_named) and named["names"]:
        named.update(names={}, anchor=None, counting="", confidence="none", reason=not_named or uncovered)
    counted = counted and not not_named
    in_rhythm = spaced_like_the_rest([float(z) * GRID_MM for z in nominal], evidence)
    named["names"] = {k: v for k, v in named["names"].items() if in_rhythm[k]}
    for k, ev in enumerate(evidence):
        ev.update(lateral_reach_mm=widths[k], name=named["names"].get(k))
    loc = Localisation(
        bodies_mm=bodies,
        sacrum_index=named["sacrum"],
        t12_index=named["t12"],
        widths_mm=widths,
        evidence=evidence,
        named=bool(named["names"]),
        anchor=named["anchor"],
        counting=named["counting"],
        confidence=named["confidence"],
        body_detector=detector,
    )
    loc.centres = {name: bodies[k] for k, name in sorted(named["names"].items())}
    loc.sideways_lean_deg = lean
    if loc.named:
        loc.note = f"named {', '.join(loc.centres)} from {loc.anchor}: {loc.counting}"
    else:
        loc.note = f"{len(bodies)} vertebral bodies found, not named: {not_named or named['reason'] or uncovered}"
    return loc, counted
