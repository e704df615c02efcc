"""Per-level segmentation metrics on torchmetrics (synced across DDP ranks by torchmetrics)."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import torch
from torch import nn
from torchmetrics.segmentation import DiceScore, MeanIoU


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
        self.register_buffer("counts", torch.zeros(len(self.levels)), persistent=False)

    def update(self, preds: torch.Tensor, target: torch.Tensor, levels) -> None:
        """preds, target: (N, ...) integer class maps; levels: N level names."""
        for i, level in enumerate(levels):
            self.iou[level].update(preds[i : i + 1], target[i : i + 1])
            self.dice[level].update(preds[i : i + 1], target[i : i + 1])
            self.counts[self.levels.index(level)] += 1

    def compute(self, prefix: str) -> dict[str, torch.Tensor]:
        """{prefix/iou_L2: …, prefix/dice_L2: …, prefix/iou_mean, prefix/dice_mean} over seen levels."""
        counts = self.counts.clone()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(counts)
        out, ious, dices = {}, [], []
        for level, n in zip(self.levels, counts.tolist()):
            if n == 0:
                continue
            ious.append(self.iou[level].compute())
            dices.append(self.dice[level].compute())
            out[f"{prefix}/iou_{level}"], out[f"{prefix}/dice_{level}"] = ious[-1], dices[-1]
        if ious:
            out[f"{prefix}/iou_mean"] = torch.stack(ious).mean()
            out[f"{prefix}/dice_mean"] = torch.stack(dices).mean()
        return out

    def reset(self) -> None:
        for metric in [*self.iou.values(), *self.dice.values()]:
            metric.reset()
        self.counts.zero_()


# --- Surface distances in physical space (SimpleITK distance maps; millimetres) -------------------


def _as_mask_image(mask, spacing, reference: sitk.Image | None = None) -> sitk.Image:
    """A uint8 SimpleITK image of a boolean mask; numpy arrays are [z, y, x] with `spacing` (x, y, z)."""
    if isinstance(mask, sitk.Image):
        return sitk.Cast(mask > 0, sitk.sitkUInt8)
    img = sitk.GetImageFromArray(np.asarray(mask).astype(np.uint8))
    if reference is not None:
        img.CopyInformation(reference)
    else:
        img.SetSpacing([float(s) for s in spacing])
    return img


def _surface_to_surface(a: sitk.Image, b: sitk.Image) -> np.ndarray:
    """Distances (mm) from every contour voxel of `a` to the contour of `b`."""
    dist_b = sitk.Abs(
        sitk.SignedMaurerDistanceMap(b, insideIsPositive=False, squaredDistance=False, useImageSpacing=True)
    )
    # GetArrayFromImage (a copy): a view of the temporary contour image would outlive its buffer.
    contour_a = sitk.GetArrayFromImage(sitk.LabelContour(a, fullyConnected=False)) > 0
    # The signed distance map is 0 on b's own contour voxels only up to half a voxel: take the contour of b
    # explicitly as 0 so that identical masks give exactly 0.
    contour_b = sitk.GetArrayFromImage(sitk.LabelContour(b, fullyConnected=False)) > 0
    d = sitk.GetArrayFromImage(dist_b)
    d[contour_b] = 0.0
    return d[contour_a]


def surface_distances(pred, target, spacing=(1.0, 1.0, 1.0)) -> dict[str, float]:
    """Average symmetric surface distance, 95th-percentile and maximum Hausdorff distance (mm).

    `pred`, `target`: boolean masks (SimpleITK images on one grid, or [z, y, x] arrays with
    `spacing` in x, y, z order). Surfaces are the masks' contour voxels; distances come from
    SimpleITK's signed Maurer distance map, so anisotropic spacing and direction are respected.
    The maximum is SimpleITK's HausdorffDistanceImageFilter. NaN when either mask is empty.
    """
    ref = pred if isinstance(pred, sitk.Image) else None
    a = _as_mask_image(pred, spacing, ref)
    b = _as_mask_image(target, spacing, ref)
    if not sitk.GetArrayViewFromImage(a).any() or not sitk.GetArrayViewFromImage(b).any():
        return dict(assd=float("nan"), hd95=float("nan"), hd=float("nan"))
    d_ab, d_ba = _surface_to_surface(a, b), _surface_to_surface(b, a)
    hausdorff = sitk.HausdorffDistanceImageFilter()
    hausdorff.Execute(a, b)
    both = np.concatenate([d_ab, d_ba])
    return dict(
        assd=float(both.mean()),
        hd95=float(max(np.percentile(d_ab, 95), np.percentile(d_ba, 95))),
        hd=float(hausdorff.GetHausdorffDistance()),
    )


def overlap(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """IoU and Dice of two boolean masks (1.0 when both are empty)."""
    p, t = np.asarray(pred, bool), np.asarray(target, bool)
    inter, union, total = int((p & t).sum()), int((p | t).sum()), int(p.sum() + t.sum())
    return dict(iou=inter / union if union else 1.0, dice=2 * inter / total if total else 1.0)
