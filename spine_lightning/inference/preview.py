"""A picture to check the result at a glance (`<case>_preview.png`): mid-sagittal and coronal views
of the CT with each vertebra coloured and labelled with its name (or "unnamed"), and the anchors
the names were counted from marked. Both views are resampled onto the localiser's 2 mm canonical
grid (z up), so an oblique or streamed scan looks the same as an axial one.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

from spine_lightning.core.io import atomic_path  # noqa: E402
from spine_lightning.data.labels import is_unnamed  # noqa: E402
from spine_lightning.data.scan import Scan  # noqa: E402
from spine_lightning.inference.localization import GRID_MM, canonical_grid  # noqa: E402


def _label_text(name: str) -> str:
    return f"unnamed ({name[len('vertebra') :]})" if is_unnamed(name) else name


def write_preview(
    path: Path,
    image: sitk.Image | Scan,
    label: sitk.Image,
    names: dict[int, str],
    anchors_mm: dict[str, list[float]] | None = None,
    title: str = "",
) -> dict:
    """Write the preview PNG; returns what it shows: file name and the texts drawn (for the report)."""
    grid = canonical_grid(image, GRID_MM)
    hu = sitk.GetArrayFromImage(grid)
    lab = sitk.GetArrayFromImage(
        sitk.Resample(label, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, label.GetPixelID())
    )
    present = [v for v in sorted(names) if (lab == v).any()]
    if present:
        zz, yy, xx = np.nonzero(np.isin(lab, present))
        cy, cx = int(np.median(yy)), int(np.median(xx))
    else:
        cy, cx = hu.shape[1] // 2, hu.shape[2] // 2
    views = {
        "sagittal (mid-spine)": (hu[:, :, cx], lab[:, :, cx], 1),
        "coronal (through the bodies)": (hu[:, cy, :], lab[:, cy, :], 2),
    }
    colours = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, 2, figsize=(10, 6))
    texts = []
    for ax, (view, (ct, lb, axis)) in zip(axes, views.items(), strict=True):
        ax.imshow(np.clip(ct, -250, 1250), cmap="gray", origin="lower", aspect="equal")
        overlay = np.zeros(lb.shape + (4,))
        for i, value in enumerate(present):
            mask = lb == value
            if not mask.any():
                continue
            overlay[mask] = (*colours(i % 10)[:3], 0.45)
            rows, cols = np.nonzero(mask)
            text = _label_text(names[value])
            ax.text(
                cols.max() + 3, rows.mean(), text, color=colours(i % 10), fontsize=9, va="center", fontweight="bold"
            )
            texts.append(text)
        ax.imshow(overlay, origin="lower", aspect="equal")
        for anchor, centre in (anchors_mm or {}).items():
            idx = grid.TransformPhysicalPointToContinuousIndex([float(c) for c in centre])  # (x, y, z)
            col = idx[1] if axis == 1 else idx[0]
            ax.plot([col], [idx[2]], marker="*", markersize=14, color="yellow", markeredgecolor="black")
            ax.text(col - 3, idx[2], f"anchor: {anchor}", color="yellow", fontsize=8, ha="right", va="center")
            texts.append(f"anchor: {anchor}")
        ax.set_title(view, fontsize=10)
        ax.set_axis_off()
    save_figure(fig, path, title)
    return dict(file=Path(path).name, texts=texts)


def save_figure(fig, path: Path, title: str = "") -> None:
    """Title the figure (the file's name when no title), write it as a PNG atomically, close it."""
    fig.suptitle(title or Path(path).name, fontsize=11)
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
