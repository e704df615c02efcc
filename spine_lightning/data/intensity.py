"""CT intensity normalisation."""

from __future__ import annotations

import numpy as np


def window(hu: np.ndarray, low: float, high: float) -> np.ndarray:
    """Clip HU to [low, high] and scale linearly to [-1, 1]."""
    return (2.0 * (np.clip(hu, low, high) - low) / (high - low) - 1.0).astype(np.float32)
