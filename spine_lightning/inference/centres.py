"""Crop centres without given centroids: the weight-free localiser's bodies, re-centred by the
segmentation network on the vertebra it segments there (`refine_centres`), and, when the bodies
could not be named, made one centre per vertebra in view (`one_centre_per_vertebra`: a vertebra
the localiser missed between two others is segmented too, two centres on one vertebra become one).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from spine_lightning.data.crops import crop_ct
from spine_lightning.data.labels import unnamed_name
from spine_lightning.data.scan import Scan, as_scan
from spine_lightning.inference.localization import Localisation, localize
from spine_lightning.inference.localization.grid import BONE_HU
from spine_lightning.inference.segment import centroid, covered_region, preprocessing_of, segmented_vertebra
from spine_lightning.inference.vertebra_votes import network_vertebrae

CONVERGED_VOXELS = 0.5  # refinement stops when the segmented centroid is this close to the crop's centre
# A gap between neighbouring centres of at least this many median spacings may hold a missed
# vertebra (one missed leaves two spacings; the spacing grows by under a third from one vertebra to
# the next); a centre there is kept only when the network segments a vertebra of its own.
GAP_SPACINGS = 1.5
DISTINCT_SPACINGS = 0.5  # two centres nearer than this many median spacings sit on one vertebra
SETTLED_MM = 2.0  # a centre whose segmented centroid moves less than this has found its vertebra
SHARED_MAX = 0.2  # a vertebra found in a gap shares less than this of its voxels with either neighbour
# a vertebra is bone: over 40 % of every real vertebra's expert mask lies above BONE_HU (sub-verse006,
# -007, TPTBox), the osteoporotic ones included; a network can segment a soft-tissue gap's shape
BONE_FRACTION_MIN = 0.2
OFF_COLUMN_SPACINGS = 1.0  # a centre this far from where its neighbours put it is off the column
SETTLE_ITERATIONS = 6  # re-centrings allowed to a centre placed in a gap, and to its neighbours


def shared_fraction(mask: sitk.Image, other: sitk.Image) -> float:
    """The fraction of `mask`'s voxels that `other` (on another crop frame) holds too."""
    on_mask = sitk.Resample(other, mask, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    inside = sitk.GetArrayViewFromImage(mask) > 0
    return float((sitk.GetArrayViewFromImage(on_mask)[inside] > 0).mean())


def bone_fraction(scan: Scan, mask: sitk.Image) -> float:
    """The fraction of `mask`'s voxels denser than bone (BONE_HU) in the scan."""
    frame = dict(size=list(mask.GetSize()), origin=list(mask.GetOrigin()), spacing=list(mask.GetSpacing()),
                 direction=list(mask.GetDirection()))
    hu = crop_ct(scan.region(*covered_region(scan, frame)), frame, outside="repeat")
    return float((hu[sitk.GetArrayViewFromImage(mask) > 0] > BONE_HU).mean())


def refine_centres(
    module, image: sitk.Image | Scan, centres: dict[str, tuple[float, float, float]], iterations: int,
    max_shift_mm: float, memo: dict | None = None,
) -> tuple[dict[str, tuple[float, float, float]], dict[str, list[float]]]:
    """Move each crop centre onto the centroid of the vertebra the network segments there.

    A coarse centre that sits off the vertebra's centroid (e.g. on its body) gives a crop the network
    was not trained on; re-centring on the segmented vertebra, as often as `iterations`, brings the
    crop back to how training saw it. A move longer than `max_shift_mm` (the network found a
    neighbour, or nothing) is not taken; nor is one under half a crop voxel (`CONVERGED_VOXELS`): the
    crop already sits on its vertebra, and stays, so that the final prediction is that same crop
    (`memo`, see `segment.foreground_probability`). Returns the new centres and each level's moves (mm).
    """
    scan = as_scan(image)
    spacing = float(preprocessing_of(module)["spacing"])
    refined, moves = {}, {}
    for level, centre in centres.items():
        current, moves[level] = tuple(centre), []
        for _ in range(iterations):
            mask = segmented_vertebra(module, scan, current, memo)
            found = None if mask is None else centroid(mask)
            shift = None if found is None else float(np.linalg.norm(np.subtract(found, centre)))
            if shift is None or shift > max_shift_mm:
                break
            move = float(np.linalg.norm(np.subtract(found, current)))
            if move < CONVERGED_VOXELS * spacing:
                break
            moves[level].append(move)
            current = found
        refined[level] = current
    return refined, moves


def settled_vertebra(module, scan: Scan, start, max_shift_mm: float, memo: dict | None):
    """The vertebra a crop centred at `start` settles on, re-centred on what the network segments up
    to SETTLE_ITERATIONS times: (its centroid, its mask); None when it segments nothing there, finds
    a vertebra more than `max_shift_mm` away, or keeps moving (a crop between two vertebrae)."""
    current = np.asarray(start, float)
    for _ in range(SETTLE_ITERATIONS):
        mask = segmented_vertebra(module, scan, current, memo)
        found = None if mask is None else np.asarray(centroid(mask), float)
        if found is None or np.linalg.norm(found - start) > max_shift_mm:
            return None
        move, current = float(np.linalg.norm(found - current)), found
        if move < SETTLED_MM:
            return found, mask
    return None


def on_the_column(points: list, spacing: float, indices: list[int]) -> list[int]:
    """`indices` (of `points`, foot to head) without the centres off the column: while one lies more
    than OFF_COLUMN_SPACINGS spacings from where its neighbours put it (between the two either side;
    at an end, a spacing on from the next two), the farthest is dropped (a bone of the pelvis
    segmented beside the sacrum, 60 mm off the line of the bodies above, on the real CT leaning 15°)."""
    kept = list(range(len(points)))
    while len(kept) >= 4:
        at = [np.asarray(points[k], float) for k in kept]
        between = [(a + b) / 2 for a, b in zip(at[:-2], at[2:], strict=True)]
        expected = [2 * at[1] - at[2], *between, 2 * at[-2] - at[-3]]
        off = [float(np.linalg.norm(a - e)) for a, e in zip(at, expected, strict=True)]
        worst = int(np.argmax(off))
        if off[worst] <= OFF_COLUMN_SPACINGS * spacing:
            break
        kept.pop(worst)
    return [indices[k] for k in kept]


def one_centre_per_vertebra(
    module, image: sitk.Image | Scan, centres: list, memo: dict | None = None
) -> tuple[list, list]:
    """Refined centres of unnamed bodies (foot to head) made one per vertebra in view.

    The spacing is the median gap between the centres (with three, the smaller gap). Two centres
    nearer than DISTINCT_SPACINGS spacings sit on one vertebra: the upper one is dropped; a centre
    off the line of the others is dropped too (`on_the_column`). A gap of
    GAP_SPACINGS spacings or more holds round(gap / spacing) - 1 missed
    vertebrae if the network says so: a centre placed evenly in the gap is kept when it settles on a
    vertebra (`settled_vertebra`) of its own: DISTINCT_SPACINGS from every other centre, at least
    BONE_FRACTION_MIN of it bone, and sharing under SHARED_MAX of its voxels with what the network
    segments at the centres either side, once they have settled (a crop between two vertebrae
    segments parts of both); those neighbours, which the localiser may have placed between two
    vertebrae, then keep their settled centres. Only for bodies that are not named: a vertebra added
    or dropped changes the count, so names never come from here.
    Returns the centres and, for each, the index in `centres` it came from (None: added)."""
    scan = as_scan(image)
    points = [np.asarray(c, float) for c in centres]
    if len(points) < 3:
        return [tuple(map(float, p)) for p in points], list(range(len(points)))
    gaps = np.linalg.norm(np.diff(points, axis=0), axis=1)
    # the vertebrae's spacing: with two gaps their median is their mean, which a missed vertebra inflates
    spacing = float(np.median(gaps) if len(gaps) >= 3 else gaps.min())

    def distinct(p, others) -> bool:
        return all(np.linalg.norm(np.subtract(p, q)) >= DISTINCT_SPACINGS * spacing for q in others)

    def neighbour(centre) -> tuple[np.ndarray, sitk.Image | None]:
        """A neighbour re-centred on its vertebra (where it settles) and that vertebra's mask."""
        return settled_vertebra(module, scan, centre, spacing / 2, memo) or (
            centre, segmented_vertebra(module, scan, centre, memo))

    kept = [0]
    for i in range(1, len(points)):
        if distinct(points[i], [points[k] for k in kept]):
            kept.append(i)
    kept = on_the_column([points[k] for k in kept], spacing, kept)
    out, sources = [points[kept[0]]], [kept[0]]
    for below, above in zip(kept[:-1], kept[1:], strict=True):
        gap = float(np.linalg.norm(points[above] - points[below]))
        missing = int(round(gap / spacing)) - 1 if gap >= GAP_SPACINGS * spacing else 0
        for k in range(1, missing + 1):
            start = points[below] + (points[above] - points[below]) * k / (missing + 1)
            candidate = settled_vertebra(module, scan, start, spacing / 2, memo)
            if candidate is None or bone_fraction(scan, candidate[1]) < BONE_FRACTION_MIN:
                continue
            found, mask = candidate
            # the neighbours either side settle first: the localiser may have put one between two vertebrae
            (low, low_mask), (high, high_mask) = neighbour(out[-1]), neighbour(points[above])
            if distinct(found, [*out[:-1], low, high]) and all(
                side is None or shared_fraction(mask, side) < SHARED_MAX for side in (low_mask, high_mask)
            ):
                out[-1], points[above] = low, high
                out.append(found)
                sources.append(None)
        out.append(points[above])
        sources.append(above)
    return [tuple(map(float, p)) for p in out], sources


def counted_by_the_network(module, scan: Scan, unnamed: Localisation, hint: dict | None) -> Localisation:
    """When the weight-free stage could not name the bodies it found: the vertebrae the network
    segments along the column (`vertebra_votes`), counted and named from the same anchors with the
    same checks; the weight-free stage's bodies (and its reason) stay when those cannot be named either."""
    counted = localize(scan, hint, bodies_mm=network_vertebrae(module, scan))
    if counted.named:
        return counted
    unnamed.note += f"; nor the vertebrae the network finds along the column: {counted.note.split(': ', 1)[-1]}"
    return unnamed


def automatic_centres(
    module, image: sitk.Image | Scan, levels, refine, hint: dict | None = None, memo: dict | None = None
) -> tuple[dict, dict]:
    """Centres of `levels` without given centroids: the weight-free localiser (named from its anchors
    or the user's `hint`), then `refine_centres` (`refine`: iterations, max_shift_mm). When the
    localiser names nothing, every body it found is segmented as 'vertebra1', 'vertebra2', ...
    (foot to head), made one centre per vertebra first (`one_centre_per_vertebra`). Returns the
    centres and what the report says of them; `memo`: see `segment.foreground_probability`."""
    scan = as_scan(image)
    found = localize(scan, hint)
    max_shift_mm = float(refine.get("max_shift_mm", 15.0))
    scan.reuse_regions(max_shift_mm)  # each level's refinement crops and final crop lie within this of its first
    if not found.named and refine.get("network_count", False):
        found = counted_by_the_network(module, scan, found, hint)
    if found.named:
        coarse = {lv: c for lv, c in found.centres.items() if lv in levels}
    else:
        coarse = {unnamed_name(k + 1): c for k, c in enumerate(found.bodies_mm)}
    centres, moves = refine_centres(module, scan, coarse, int(refine.get("iterations", 0)), max_shift_mm, memo)
    completed = {}
    if not found.named and refine.get("one_per_vertebra", False):
        names, before = list(centres), list(centres.values())
        points, sources = one_centre_per_vertebra(module, scan, list(centres.values()), memo)
        centres = {unnamed_name(k + 1): p for k, p in enumerate(points)}
        moves = {unnamed_name(k + 1): moves[names[s]] for k, s in enumerate(sources) if s is not None}
        added = [unnamed_name(k + 1) for k, s in enumerate(sources) if s is None]
        completed = dict(
            vertebrae_added=added,
            centres_dropped_mm=[list(before[i]) for i in range(len(before)) if i not in sources],
        )
        if added:
            found.note += (f"; {', '.join(added)} found by the network between bodies the localiser placed "
                           "(a vertebra it missed)")
        if len(completed["centres_dropped_mm"]):
            found.note += (f"; {len(completed['centres_dropped_mm'])} centre(s) dropped: on a vertebra segmented "
                           "already, or off the column")
    return centres, dict(
        source="automatic",
        **found.report(),
        refined_centres_mm={lv: list(c) for lv, c in centres.items()},
        refinement_moves_mm=moves,
        **completed,
    )
