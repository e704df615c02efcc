"""Boundary weights of the paper's edge-weighted cross-entropy (eq. 4)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def boundary_weights(target: np.ndarray, edge_weight: float) -> np.ndarray:
    """1.0 everywhere, `edge_weight` where the target and its Laplacian boundary are both 1.

    The Laplacian of a binary mask is non-zero exactly at voxels with a face neighbour of the other
    value, so on the foreground it marks the contour voxels of the object.
    """
    mask = target.astype(bool)
    boundary = ndimage.laplace(mask.astype(np.float32), mode="nearest") != 0
    return np.where(mask & boundary, np.float32(edge_weight), np.float32(1.0))
