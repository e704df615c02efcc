"""Checks Hydra runs before it creates the run directory (registered in conf/hydra/default.yaml)."""

from __future__ import annotations

import os
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from spine_lightning.core.cli import fail


def unwritable_reason(directory: str | Path) -> str | None:
    """Why `directory` cannot be created or written to, or None if it can."""
    path = Path(directory).absolute()
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


class WritableOutputDir(Callback):
    """An unwritable output folder fails with one line before Hydra tries to create it (Hydra itself
    would end in a stack trace)."""

    def _check(self, config: DictConfig, key: str) -> None:
        directory = OmegaConf.select(config, key)
        reason = unwritable_reason(directory)
        if reason:
            fail(f"{key}={directory}: cannot write the run directory there: {reason}", 2)

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config, "hydra.sweep.dir")
