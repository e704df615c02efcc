"""Training callbacks that keep what was done: finite best checkpoints and resumable random state."""

from __future__ import annotations

import logging
import math
import random

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

log = logging.getLogger(__name__)


def has_nonfinite_parameters(module: torch.nn.Module) -> bool:
    return any(not torch.isfinite(p).all() for p in module.parameters())


class FiniteModelCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that never ranks a model with a non-finite score or non-finite weights as best.

    Lightning keeps the first `save_top_k` models whatever their score (a NaN score counts as the worst),
    so a diverged first epoch would otherwise become `best_model_path`. `last.ckpt` is written after
    every epoch whose weights are finite: it is the state to resume from, not a model to use.
    """

    def check_monitor_top_k(self, trainer, current: torch.Tensor | None = None) -> bool:
        if current is not None and not math.isfinite(float(current)):
            log.warning("%s=%s at epoch %d: not kept as a best checkpoint", self.monitor, float(current),
                        trainer.current_epoch)
            return False
        if has_nonfinite_parameters(trainer.lightning_module):
            log.warning("non-finite weights at epoch %d: not kept as a best checkpoint",
                        trainer.current_epoch)
            return False
        return super().check_monitor_top_k(trainer, current)

    # Lightning 2.6 writes last.ckpt only in a step that also wrote a top-k checkpoint, so after the
    # best epoch it went stale and a resumed run lost every epoch since. It is the state to resume
    # from: written at every save point (the end of each training epoch, or of each validation).
    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self._save_stale_last(trainer, at_train_epoch_end=True)

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        self._save_stale_last(trainer, at_train_epoch_end=False)

    def _save_stale_last(self, trainer, at_train_epoch_end: bool) -> None:
        if (self.save_last and not self._should_skip_saving_checkpoint(trainer)
                and self._should_save_on_train_epoch_end(trainer) == at_train_epoch_end
                and not has_nonfinite_parameters(trainer.lightning_module)):  # nothing to resume from
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class RngStateCheckpoint(Callback):
    """Stores the torch, NumPy and Python random states in each checkpoint and restores them on resume,
    so a resumed run shuffles and augments exactly as the uninterrupted run would have.

    States are kept as tensors and plain tuples so the checkpoint still loads with `weights_only=True`.
    """

    def state_dict(self) -> dict:
        name, keys, pos, has_gauss, cached = np.random.get_state()
        keys = torch.from_numpy(keys.astype(np.int64))
        numpy_state = (str(name), keys, int(pos), int(has_gauss), float(cached))
        return {
            "torch": torch.get_rng_state(),
            "numpy": numpy_state,
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def load_state_dict(self, state_dict: dict) -> None:
        torch.set_rng_state(state_dict["torch"])
        name, keys, pos, has_gauss, cached = state_dict["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        version, internal, gauss = state_dict["python"]
        random.setstate((version, tuple(internal), gauss))
        if state_dict.get("cuda") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])
