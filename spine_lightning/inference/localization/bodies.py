"""Stage 3: where the vertebral bodies are along the column. The core profile dips at each disc,
narrowly, between two dense endplates, and in an osteoporotic body's core, broadly. Its minima are
the body centres unless they sit on discs (dense cores and thick discs: the minima are then the
discs, half a vertebra off); then the bodies lie half way between the discs, the narrow dips that
form a regular chain at the column's period. Also: whether the bodies found cover the column."""

from __future__ import annotations

import numpy as np
from scipy import ndimage, signal

from spine_lightning.inference.localization.grid import GRID_MM

MIN_BODY_GAP_MM = 18.0
GAP_RANGE = (0.75, 1.35)  # consecutive bodies this many times the median spacing apart: counted as one each
PROMINENCE_HU = 10.0
DISC_MAX_MM = 14.0  # a dip of the core profile narrower than this (at half depth) is a disc; a body's core is wider
DISC_PROMINENCE_HU = 15.0
DISC_GAP_MM = (18.0, 50.0)  # consecutive discs of one column are a body apart
DISC_GAP_RATIO = 1.25  # ... and each gap is within this factor of the one below it and of their median
DISC_MIN_HU = 0.0
DISC_DEPTH_CAP_HU = 150.0  # one very deep dip must not outweigh a chain of ordinary discs
PERIOD_MIN_CORRELATION = 0.2  # a column's rhythm shows as an autocorrelation peak at least this high
DISC_SMOOTH_MM = 1.4  # the profile the discs are found in is barely smoothed: a thin disc is one or two slices


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
    if len(chain) < 2 or np.median(np.diff(chain)) * GRID_MM < 2 * DISC_GAP_MM[0]:
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
