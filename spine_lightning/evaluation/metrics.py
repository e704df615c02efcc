"""Per-level segmentation metrics on torchmetrics (synced across DDP ranks by torchmetrics), and
surface distances as MONAI computes them."""

from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage
from torch import nn
from torchmetrics.segmentation import DiceScore, MeanIoU


def per_level_means(rows, levels, metrics, prefix: str) -> dict[str, float]:
    """The one per-level aggregation (training's test stage, eval, the ablation report).

    `rows`: one dict per case (a crop or a subject's vertebra) with `level` and the `metrics` keys;
    `metrics`: names, or {name: row key}. Each level's value is the mean over its cases: a missed
    vertebra is a case scoring 0 and stays in; a non-finite value (no surface to measure) is left
    out. A level without any case is absent, not 0. `{prefix}/{name}_mean` is the mean over the
    levels present. Keys: `{prefix}/{name}_{level}`, `{prefix}/{name}_mean`.
    """
    keys = metrics if isinstance(metrics, dict) else {m: m for m in metrics}
    out = {}
    for name, key in keys.items():
        present = []
        for level in levels:
            values = [float(r[key]) for r in rows if r["level"] == level and math.isfinite(float(r[key]))]
            if values:
                out[f"{prefix}/{name}_{level}"] = float(np.mean(values))
                present.append(out[f"{prefix}/{name}_{level}"])
        if present:
            out[f"{prefix}/{name}_mean"] = float(np.mean(present))
    return out


class PerLevelMetrics(nn.Module):
    """Foreground IoU and Dice per vertebral level, each averaged over the crops of that level.

    A crop whose prediction misses the vertebra scores 0 and stays in the mean.
    """

    def __init__(self, levels):
        super().__init__()
        self.levels = list(levels)
        self.iou = nn.ModuleDict(
            {lv: MeanIoU(num_classes=2, include_background=False, input_format="index") for lv in self.levels}
        )
        self.dice = nn.ModuleDict(
            {
                lv: DiceScore(num_classes=2, include_background=False, input_format="index", average="micro")
                for lv in self.levels
            }
        )

    def update(self, preds: torch.Tensor, target: torch.Tensor, levels) -> None:
        """preds, target: (N, ...) integer class maps; levels: N level names."""
        for i, level in enumerate(levels):
            self.iou[level].update(preds[i : i + 1], target[i : i + 1])
            self.dice[level].update(preds[i : i + 1], target[i : i + 1])

    def compute(self, prefix: str) -> dict[str, float]:
        """{prefix/iou_L2: …, prefix/dice_L2: …, prefix/iou_mean, prefix/dice_mean} over seen levels."""
        # Crops seen per level, from the metrics themselves: a buffer here would be swapped out with the
        # weights by Lightning's WeightAveraging callback (it swaps every buffer) before compute runs.
        first = next(iter(self.iou.values()))
        counts = torch.tensor([float(self.iou[lv].update_count) for lv in self.levels], device=first.device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(counts)
        # torchmetrics gives each level's mean over its crops (all ranks); the counts say which
        # levels had a crop on any rank, so every rank returns the same keys.
        rows = [dict(level=lv, iou=self.iou[lv].compute().item(), dice=self.dice[lv].compute().item())
                for lv, n in zip(self.levels, counts.tolist()) if n > 0]
        return per_level_means(rows, self.levels, ("iou", "dice"), prefix)

    def reset(self) -> None:
        for metric in [*self.iou.values(), *self.dice.values()]:
            metric.reset()


# --- Surface distances in physical space (millimetres), as MONAI defines them ----------------------


def _mask_array(mask, spacing) -> tuple[np.ndarray, tuple[float, ...]]:
    """A boolean [z, y, x] array and its spacing in z, y, x order (a SimpleITK image brings its own)."""
    if isinstance(mask, sitk.Image):
        return sitk.GetArrayFromImage(mask) > 0, tuple(mask.GetSpacing())[::-1]
    return np.asarray(mask, bool), tuple(float(s) for s in spacing)[::-1]


def _surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of the mask with a face neighbour outside it (the image border counts as outside):
    MONAI's `get_mask_edges` (mask XOR its erosion)."""
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def surface_distances(pred, target, spacing=(1.0, 1.0, 1.0)) -> dict[str, float]:
    """Average symmetric surface distance, 95th-percentile and maximum Hausdorff distance (mm).

    `pred`, `target`: boolean masks (SimpleITK images on one grid, or [z, y, x] arrays with
    `spacing` in x, y, z order). Each surface voxel of one mask is measured to the nearest surface
    voxel of the other, both ways; ASSD is the mean over all surface voxels of both, HD95 the larger
    of the two directed 95th percentiles, HD the largest distance. This is MONAI's definition
    (`compute_average_surface_distance(symmetric=True)`, `compute_hausdorff_distance`), so a surface
    voxel inside the other mask counts its distance to that mask's surface, not 0.
    NaN when either mask is empty.
    """
    a, sampling = _mask_array(pred, spacing)
    b, _ = _mask_array(target, spacing)
    if not a.any() or not b.any():
        return dict(assd=float("nan"), hd95=float("nan"), hd=float("nan"))
    surface_a, surface_b = _surface(a), _surface(b)
    d_ab = ndimage.distance_transform_edt(~surface_b, sampling=sampling)[surface_a]
    d_ba = ndimage.distance_transform_edt(~surface_a, sampling=sampling)[surface_b]
    return dict(
        assd=float(np.concatenate([d_ab, d_ba]).mean()),
        hd95=float(max(np.percentile(d_ab, 95), np.percentile(d_ba, 95))),
        hd=float(max(d_ab.max(), d_ba.max())),
    )


def overlap(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """IoU and Dice of two boolean masks (1.0 when both are empty)."""
    p, t = np.asarray(pred, bool), np.asarray(target, bool)
    inter, union, total = int((p & t).sum()), int((p | t).sum()), int(p.sum() + t.sum())
    return dict(iou=inter / union if union else 1.0, dice=2 * inter / total if total else 1.0)
