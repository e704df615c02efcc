"""Two CPU ranks (gloo), run by tests/test_ddp.py: rank 1 alone meets a non-finite loss
(nonfinite=skip), and rank 0 alone has no surface distance to log (only empty predictions).
Either hangs unless the ranks decide together. Each rank writes its test metrics to argv[1]."""

import json
import math
import sys

import lightning as L
import torch
from torch.utils.data import DataLoader

from spine_lightning.training.module import SpineSegmentationModule

NET = dict(_target_="spine_lightning.models.GCNResidualFCN", in_channels=1, num_classes=2, width=2, levels=2,
           convs=1, kernel=3, gcn_kernel=3)


def crop(i: int) -> dict:
    image = torch.zeros(1, 8, 8, 8)
    if i == 1:  # the crop of rank 1 (no shuffling: sample i goes to rank i)
        image[0, 0, 0, 0] = math.nan
    target = torch.zeros(8, 8, 8, dtype=torch.long)
    target[2:6, 2:6, 2:6] = 1
    return dict(image=image, target=target, weights=torch.ones(8, 8, 8), subject=f"s{i}", level="L2")


class Module(SpineSegmentationModule):
    def _add_surface_distances(self, pred, target, level):
        # rank 0: an empty prediction of L2 (no surface, NaN); rank 1: a measured L3
        rank = self.global_rank
        self.test_surface.setdefault("L2" if rank == 0 else "L3", []).append(
            (math.nan, math.nan) if rank == 0 else (1.5, 2.5))


if __name__ == "__main__":
    data = DataLoader([crop(0), crop(1)], batch_size=1, shuffle=False)
    module = Module(net=NET, levels=["L2", "L3"], nonfinite="skip", scheduler=None)
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, train_dataloaders=data)
    test_data = DataLoader([dict(crop(0), image=torch.zeros(1, 8, 8, 8)) for _ in range(2)], batch_size=1)
    trainer.test(module, dataloaders=test_data, verbose=False)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    out = dict(rank=trainer.global_rank, skipped=module.skipped_batches, metrics=metrics)
    with open(f"{sys.argv[1]}.rank{trainer.global_rank}.json", "w") as f:
        json.dump(out, f)
