"""Per-level segmentation metrics on torchmetrics (synced across DDP ranks by torchmetrics)."""

from __future__ import annotations

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
        self.iou = nn.ModuleDict({lv: MeanIoU(num_classes=2, include_background=False, input_format="index") for lv in self.levels})
        self.dice = nn.ModuleDict(
            {lv: DiceScore(num_classes=2, include_background=False, input_format="index", average="micro") for lv in self.levels}
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
