"""Overlay pictures of a crop: CT mid-slices with the target and prediction outlines (pure numpy).

Crop arrays are (Z, Y, X) = (inferior→superior, anterior→posterior, right→left), so an axial slice
shows anterior at the top and the patient's right on the left (radiological view), and a sagittal
slice is flipped to put superior at the top.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

TARGET_RGB = (0, 255, 0)  # green
PRED_RGB = (255, 0, 0)  # red; where both outlines meet the pixel turns yellow
BOTH_RGB = (255, 255, 0)


def outline(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels of a 2-D binary mask (the mask minus its erosion)."""
    mask = mask.astype(bool)
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def mid_slices(volume: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Axial (Y, X) slice at the middle Z and sagittal (Z, Y) slice at the middle X, superior up."""
    z, _, x = (n // 2 for n in volume.shape)
    return volume[z], volume[:, :, x][::-1]


def _gray_rgb(image: np.ndarray, low: float, high: float) -> np.ndarray:
    gray = np.clip((image - low) / (high - low), 0.0, 1.0)
    return np.repeat((gray * 255).astype(np.uint8)[..., None], 3, axis=-1)


def _paint(rgb: np.ndarray, target: np.ndarray, pred: np.ndarray) -> np.ndarray:
    t, p = outline(target), outline(pred)
    rgb[t & ~p], rgb[p & ~t], rgb[t & p] = TARGET_RGB, PRED_RGB, BOTH_RGB
    return rgb


def overlay_panel(image: np.ndarray, target: np.ndarray, pred: np.ndarray,
                  window: tuple[float, float] = (-1.0, 1.0), gap: int = 2, min_height: int = 0) -> np.ndarray:
    """uint8 RGB picture: the axial and the sagittal mid-slice side by side, outlines painted on.

    image, target, pred: (Z, Y, X) arrays of one crop (image already windowed into `window`).
    min_height: enlarge by a whole factor (nearest neighbour, outlines stay crisp) to at least this.
    """
    if not image.shape == target.shape == pred.shape or image.ndim != 3:
        raise ValueError(f"image, target and pred must be (Z, Y, X) arrays of one shape, got "
                         f"{image.shape}, {target.shape}, {pred.shape}")
    panels = [_paint(_gray_rgb(i, *window), t, p)
              for i, t, p in zip(mid_slices(image), mid_slices(target), mid_slices(pred), strict=True)]
    height = max(p.shape[0] for p in panels)
    width = sum(p.shape[1] for p in panels) + gap * (len(panels) - 1)
    out, col = np.zeros((height, width, 3), np.uint8), 0
    for panel in panels:
        out[: panel.shape[0], col : col + panel.shape[1]] = panel
        col += panel.shape[1] + gap
    factor = max(1, -(-min_height // height))
    return out.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else out
