"""eval's picture per case (`previews/<subject>_preview.png`): mid-sagittal and coronal views of
the CT with the reference contour (green) and the predicted one (red) of every scored level, so a
bad mask is seen, not read. Views are resampled onto the localiser's 2 mm canonical grid (z up)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

from spine_lightning.data.labels import level_value  # noqa: E402
from spine_lightning.inference.localization import GRID_MM, canonical_grid  # noqa: E402
from spine_lightning.inference.preview import save_figure  # noqa: E402

REFERENCE_RGB, PREDICTED_RGB = "lime", "red"


def write_comparison_preview(path: Path, image: sitk.Image, truth: sitk.Image, pred: sitk.Image, levels,
                             title: str = "") -> list[str]:
    """Write the PNG; returns the level names drawn (a level drawn is in the reference or the prediction)."""
    grid = canonical_grid(image, GRID_MM)
    hu = sitk.GetArrayFromImage(grid)

    def on_grid(label):
        return sitk.GetArrayFromImage(sitk.Resample(label, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                                                    label.GetPixelID()))

    ref, out = on_grid(truth), on_grid(pred)
    values = {lv: level_value(lv) for lv in levels}
    present = [lv for lv, v in values.items() if (ref == v).any() or (out == v).any()]
    both = np.isin(ref, list(values.values())) | np.isin(out, list(values.values()))
    _, yy, xx = np.nonzero(both) if both.any() else (None, [hu.shape[1] // 2], [hu.shape[2] // 2])
    cy, cx = int(np.median(yy)), int(np.median(xx))
    fig, axes = plt.subplots(1, 2, figsize=(10, 6))
    for ax, (name, cut) in zip(axes, (("sagittal", np.s_[:, :, cx]), ("coronal", np.s_[:, cy, :])), strict=True):
        ax.imshow(np.clip(hu[cut], -250, 1250), cmap="gray", origin="lower", aspect="equal")
        for lv in present:
            for lab, colour in ((ref, REFERENCE_RGB), (out, PREDICTED_RGB)):
                mask = lab[cut] == values[lv]
                if mask.any():
                    ax.contour(mask.astype(float), levels=[0.5], colors=colour, linewidths=1.0)
            rows, cols = np.nonzero((ref[cut] == values[lv]) | (out[cut] == values[lv]))
            if len(rows):
                ax.text(cols.max() + 3, rows.mean(), lv, color="white", fontsize=9, va="center")
        ax.set_title(f"{name}: reference green, prediction red", fontsize=10)
        ax.set_axis_off()
    save_figure(fig, path, title)
    return present
