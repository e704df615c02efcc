"""The LightningModule: wires network, losses and per-level metrics; nothing else."""

from __future__ import annotations

import logging
import math

import hydra
import lightning as L
import torch
from torch import nn

from spine_lightning.core.errors import SpineError
from spine_lightning.evaluation.metrics import PerLevelMetrics, per_level_means, surface_distances
from spine_lightning.training.losses import adversarial_perturbation, segmentation_loss, weighted_cross_entropy

log = logging.getLogger(__name__)


class SpineSegmentationModule(L.LightningModule):
    """Single-vertebra segmentation with optional adversarial training.

    Hyper-parameters are plain types (net config, optimiser settings, levels), so a checkpoint
    rebuilds its own network and loads with `weights_only=True`. `preprocessing` (spacing,
    crop_size, window_hu) travels in the checkpoint so that predict crops exactly as training did.
    Optimisation is manual: the input gradient for the adversarial perturbation comes from the same
    backward pass that gives the gradients of L_st, so an adversarial step costs two forward and
    two backward passes.
    """

    def __init__(self, net: dict, levels, lr: float = 1e-3, weight_decay: float = 0.0,
                 epsilon: float = 0.0, perturbation: str = "sign", lam: float = 1.0,
                 scheduler: str | None = "cosine", nonfinite: str = "stop",
                 preprocessing: dict | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.net = hydra.utils.instantiate(dict(net))
        self.val_metrics = PerLevelMetrics(levels)
        self.test_metrics = PerLevelMetrics(levels)
        self.test_cases: list[dict] = []  # one row per test crop, from every rank after the epoch
        # "test", or "test_<perturbation>" while testing on perturbed crops (robustness)
        self.test_prefix = "test"
        self.test_source_metrics = nn.ModuleDict()  # one PerLevelMetrics per data source (data=mix)
        self.skipped_batches = 0  # batches skipped for a non-finite loss (nonfinite="skip")
        self.test_surface: dict[str, list[tuple[float, float]]] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @property
    def adversarial(self) -> bool:
        return self.hparams.epsilon > 0

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        opt.zero_grad()
        x, target, weights, valid = batch["image"], batch["target"], batch["weights"], batch.get("valid")
        if self.adversarial:
            x = x.clone().requires_grad_(True)
        loss_st = weighted_cross_entropy(self(x), target, weights, valid)
        if not self._check_finite(loss_st, batch, "L_st"):
            return None
        self.manual_backward(loss_st)
        loss_at = None
        if self.adversarial:
            r = adversarial_perturbation(x.grad, self.hparams.epsilon, self.hparams.perturbation)
            loss_at = weighted_cross_entropy(self(x.detach() + r), target, weights, valid)
            if not self._check_finite(loss_at, batch, "L_at"):
                opt.zero_grad()  # drop the L_st gradients too: the batch is skipped whole
                return None
            self.manual_backward(self.hparams.lam * loss_at)
            self.log("train/loss_at", loss_at.detach(), batch_size=len(target))
        opt.step()
        loss = segmentation_loss(loss_st.detach(), None if loss_at is None else loss_at.detach(), self.hparams.lam)
        self.log("train/loss_st", loss_st.detach(), batch_size=len(target))
        self.log("train/loss", loss, prog_bar=True, batch_size=len(target))
        return loss

    def on_train_epoch_end(self):
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()

    def _check_finite(self, loss: torch.Tensor, batch, name: str) -> bool:
        """True if the loss is finite. Otherwise stop with the step and subjects (nonfinite="stop"), or
        count the batch as skipped and return False (nonfinite="skip")."""
        finite = torch.tensor(float(math.isfinite(loss.item())), device=loss.device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # One decision for all ranks: a rank that skipped its backward would leave the others
            # waiting in DDP's gradient all-reduce.
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        if finite.item():
            return True
        subjects = ", ".join(batch["subject"])
        where = (f"non-finite {name} at global step {self.global_step} on subjects {subjects}"
                 if not math.isfinite(loss.item()) else
                 f"non-finite {name} on another rank at global step {self.global_step}")
        if self.hparams.get("nonfinite", "stop") != "skip":
            raise SpineError(where + " (set nonfinite_loss=skip to skip such batches)")
        self.skipped_batches += 1
        log.warning("%s: batch skipped (%d so far)", where, self.skipped_batches)
        self.log("train/skipped_batches", float(self.skipped_batches), batch_size=len(batch["subject"]))
        return False

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["skipped_batches"] = self.skipped_batches

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.skipped_batches = int(checkpoint.get("skipped_batches", 0))

    def _evaluate(self, batch, metrics: PerLevelMetrics, stage: str):
        logits = self(batch["image"])
        valid = batch.get("valid")
        loss = weighted_cross_entropy(logits, batch["target"], batch["weights"], valid)
        self.log(f"{stage}/loss", loss, batch_size=len(batch["target"]), sync_dist=True)
        preds = logits.argmax(dim=1)
        if valid is not None:  # past the scan's edge is air filled in, not anatomy: never scored
            preds = preds * valid.to(preds.dtype)
        metrics.update(preds, batch["target"], batch["level"])
        return preds

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, self.val_metrics, "val")

    def on_validation_epoch_end(self):
        self.log_dict(self.val_metrics.compute("val"), prog_bar=False)
        self.val_metrics.reset()

    def test_step(self, batch, batch_idx):
        preds = self._evaluate(batch, self.test_metrics, self.test_prefix)
        sources = batch.get("source", [""] * len(preds))
        for i in range(len(preds)):
            if sources[i] in self.test_source_metrics:
                self.test_source_metrics[sources[i]].update(preds[i : i + 1], batch["target"][i : i + 1],
                                                            [batch["level"][i]])
            p, t = preds[i].bool(), batch["target"][i].bool()
            inter, union, total = (p & t).sum().item(), (p | t).sum().item(), p.sum().item() + t.sum().item()
            self.test_cases.append(dict(condition=self.test_prefix, subject=batch["subject"][i],
                                        level=batch["level"][i], source=sources[i],
                                        iou=inter / union if union else 1.0, dice=2 * inter / total if total else 1.0))
            self._add_surface_distances(preds[i], batch["target"][i], batch["level"][i])

    def _add_surface_distances(self, pred: torch.Tensor, target: torch.Tensor, level: str) -> None:
        """ASSD and HD95 (mm) of one test crop, on the crop's isotropic grid."""
        spacing = float((self.hparams.get("preprocessing") or {}).get("spacing", 1.0))
        d = surface_distances(pred.cpu().numpy() > 0, target.cpu().numpy() > 0, (spacing,) * 3)
        self.test_surface.setdefault(level, []).append((d["assd"], d["hd95"]))

    def on_test_epoch_start(self):
        self.test_cases = []
        self.test_surface = {}
        # the datamodule's sources, the same on every rank, so that the metrics sync under DDP
        names = getattr(getattr(self.trainer, "datamodule", None), "source_names", None) or []
        self.test_source_metrics = nn.ModuleDict({n: PerLevelMetrics(self.hparams.levels) for n in names})
        self.test_source_metrics.to(self.device)

    def on_test_epoch_end(self):
        prefix = self.test_prefix
        self.log_dict(self.test_metrics.compute(prefix))
        self.test_metrics.reset()
        for name, metrics in self.test_source_metrics.items():  # test/<source>/iou_L3, ...
            self.log_dict(metrics.compute(f"{prefix}/{name}"))
            metrics.reset()
        # Every rank aggregates all ranks' crops, so each logs the same keys and values: a level
        # with only empty predictions on one rank cannot leave the ranks with different key sets
        # (which hangs a synced log_dict), and no sync is needed.
        rows = _gather([dict(level=lv, assd=a, hd95=h) for lv, values in self.test_surface.items() for a, h in values])
        self.test_cases = _gather(self.test_cases)
        means = per_level_means(rows, self.hparams.levels, ("assd", "hd95"), prefix)
        if means:
            self.log_dict(means)

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        if self.hparams.scheduler == "cosine" and self.trainer is not None and self.trainer.max_epochs:
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.trainer.max_epochs))
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
        return opt


def _gather(rows: list) -> list:
    """The rows of every rank (all ranks must call it), or these rows outside DDP."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return rows
    gathered = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, rows)
    return [row for part in gathered for row in part]
