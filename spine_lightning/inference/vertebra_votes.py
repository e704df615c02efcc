"""Vertebrae found by the segmentation network along the spine column, for the count that names
them when the core profile cannot be counted (thin discs between dense endplates leave no dip to
find). Crops are centred every VOTE_STEP_MM along the column's centre line and each is re-centred
on the vertebra the network segments there until it settles: every crop so votes for the centroid
of one vertebra, and the vertebrae are the places that gather votes. A vertebra is taller than
two steps, so each one wholly in view gathers at least two; a crop between two vertebrae settles
on one of them. The anchors are then read at these vertebrae as at the weight-free stage's bodies
(`localize(..., bodies_mm=...)`), and the same checks of the count apply."""

from __future__ import annotations

import numpy as np

from spine_lightning.data.scan import Scan
from spine_lightning.inference.localization.column import column_extent, column_on_grid, on_the_column
from spine_lightning.inference.localization.grid import GRID_MM
from spine_lightning.inference.segment import centroid, segmented_vertebra

VOTE_STEP_MM = 6.0  # a lumbar vertebra is 25-35 mm tall, a thoracic one about 20 mm: three votes or more
VOTE_SETTLED_MM = 1.0  # a crop whose segmented centroid moves less than this has found its vertebra
VOTE_ITERATIONS = 6
SAME_VERTEBRA_MM = 6.0  # votes this close to a place's median are for the same vertebra (spacing 20-40 mm)
MIN_VOTES = 2


def vertebra_votes(module, scan: Scan) -> list[np.ndarray]:
    """Where each crop along the column settles (mm): the centroid of the vertebra the network
    segments there once re-centring moves it less than VOTE_SETTLED_MM. A crop that finds nothing,
    or keeps moving, gives no vote."""
    grid, _, _, bone, line = column_on_grid(scan)
    if line is None:
        return []
    _, on = on_the_column(bone, line, GRID_MM)
    lo, hi = column_extent(bone, line, GRID_MM)
    votes = []
    for z in range(lo, hi + 1, int(round(VOTE_STEP_MM / GRID_MM))):
        if not on[z]:  # the centre line has left the column for the pelvis
            continue
        on_line = (float(line[z, 1]), float(line[z, 0]), float(z))
        current = np.array(grid.TransformContinuousIndexToPhysicalPoint(on_line))
        for _ in range(VOTE_ITERATIONS):
            mask = segmented_vertebra(module, scan, current, None)  # no memo: dozens of crops
            if mask is None:
                break
            found = np.asarray(centroid(mask), float)
            settled = np.linalg.norm(found - current) < VOTE_SETTLED_MM
            current = found
            if settled:
                votes.append(found)
                break
    return votes


def voted_vertebrae(votes: list[np.ndarray]) -> list[tuple[float, float, float]]:
    """The vertebrae (mm, foot to head) that the votes gather at: votes in order of height join the
    place before when within SAME_VERTEBRA_MM of its median, and a place with fewer than MIN_VOTES
    is dropped (a crop settled half way, or a sliver of a vertebra cut by the scan's edge)."""
    places: list[list[np.ndarray]] = []
    for vote in sorted(votes, key=lambda v: v[2]):
        if places and np.linalg.norm(vote - np.median(places[-1], axis=0)) <= SAME_VERTEBRA_MM:
            places[-1].append(vote)
        else:
            places.append([vote])
    return [tuple(float(c) for c in np.median(p, axis=0)) for p in places if len(p) >= MIN_VOTES]


def network_vertebrae(module, scan: Scan) -> list[tuple[float, float, float]]:
    """The vertebrae the network segments along the column (mm, foot to head)."""
    return voted_vertebrae(vertebra_votes(module, scan))
