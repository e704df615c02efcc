"""W&B extras as Lightning callbacks: validation overlays, a per-case table at test time and the
best checkpoint as a model artifact.

Each does nothing when the trainer has no WandbLogger, and logs from global rank 0 only.
"""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger

from spine_lightning.evaluation.overlays import overlay_panel

CASE_COLUMNS = ["subject", "level", "iou", "dice"]


def wandb_logger(trainer: L.Trainer) -> WandbLogger | None:
    return next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)


class WandbValidationOverlays(L.Callback):
    """Every `every_n_epochs` epochs (from the first), log `max_images` validation crops as
    `wandb.Image`: CT mid-slices, axial and sagittal, with target (green) and prediction (red)
    outlines, under the key `val/overlays`."""

    def __init__(self, every_n_epochs: int = 5, max_images: int = 4, min_height: int = 192,
                 key: str = "val/overlays"):
        if every_n_epochs < 1 or max_images < 1:
            raise ValueError("every_n_epochs and max_images must be >= 1")
        self.every_n_epochs, self.max_images = every_n_epochs, max_images
        self.min_height, self.key = min_height, key
        self._crops: list[tuple] = []

    def _due(self, trainer: L.Trainer) -> bool:
        return (trainer.is_global_zero and not trainer.sanity_checking and wandb_logger(trainer) is not None
                and trainer.current_epoch % self.every_n_epochs == 0)

    def on_validation_epoch_start(self, trainer, pl_module):
        self._crops = []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if len(self._crops) >= self.max_images or not self._due(trainer):
            return
        with torch.no_grad():  # one extra forward on the few crops shown; the module's step returns nothing
            preds = pl_module(batch["image"]).argmax(dim=1)
        for i in range(min(len(preds), self.max_images - len(self._crops))):
            self._crops.append((batch["subject"][i], batch["level"][i],
                                batch["image"][i, 0].float().cpu().numpy(), batch["target"][i].cpu().numpy(),
                                preds[i].cpu().numpy()))

    def on_validation_epoch_end(self, trainer, pl_module):
        if not self._crops or not self._due(trainer):
            return
        images = [overlay_panel(image, target, pred, min_height=self.min_height)
                  for _, _, image, target, pred in self._crops]
        captions = [f"{subject} {level} epoch {trainer.current_epoch} (green: target, red: prediction)"
                    for subject, level, *_ in self._crops]
        wandb_logger(trainer).log_image(self.key, images, step=trainer.global_step, caption=captions)
        self._crops = []


class WandbTestCaseTable(L.Callback):
    """At the end of testing, log the module's per-case metrics (`test_cases`: condition, subject,
    level, IoU, Dice of each crop; the module gathers them from all ranks) as a `wandb.Table` under
    `test/cases` (`test_noise/cases`, ... for a perturbed test)."""

    def __init__(self, key: str = "test/cases"):
        self.key = key

    def on_test_end(self, trainer, pl_module):  # after the module's epoch end has gathered the cases
        logger = wandb_logger(trainer)
        if not trainer.is_global_zero or logger is None:
            return
        cases = list(getattr(pl_module, "test_cases", []))
        rows = sorted(([c[k] for k in CASE_COLUMNS] for c in cases), key=lambda r: (r[0], r[1]))
        key = self.key.replace("test", getattr(pl_module, "test_prefix", "test"), 1)
        logger.log_table(key, columns=CASE_COLUMNS, data=rows)


class WandbBestCheckpoint(L.Callback):
    """When `enabled`, log the best checkpoint (by the ModelCheckpoint monitor) as a W&B artifact
    `model-<run id>` of type `model` with alias `best` at the end of fitting.

    Unlike `WandbLogger(log_model=True)`, which Lightning refuses in offline mode, this also works
    offline: the artifact is stored with the run and uploaded by `wandb sync`.
    """

    def __init__(self, enabled: bool = False):
        self.enabled = enabled

    def on_fit_end(self, trainer, pl_module):
        logger, ckpt = wandb_logger(trainer), trainer.checkpoint_callback
        if not (self.enabled and trainer.is_global_zero and logger is not None and ckpt is not None):
            return
        if not ckpt.best_model_path:
            return
        import wandb

        score = None if ckpt.best_model_score is None else float(ckpt.best_model_score)
        metadata = {"monitor": ckpt.monitor, "score": score, "epochs_trained": trainer.current_epoch}
        artifact = wandb.Artifact(f"model-{logger.experiment.id}", type="model", metadata=metadata)
        artifact.add_file(ckpt.best_model_path, name="best.ckpt")
        logger.experiment.log_artifact(artifact, aliases=["best"])
