"""Checkpoint files that are either complete or absent: written to a temporary name, then renamed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from spine_lightning.core.io import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint I/O, but the temporary file lives next to the target.

    Lightning's own transaction writes the temporary file in the system temp folder, so its final move
    can be a copy across file systems; a kill during that copy leaves a truncated `last.ckpt`. A rename
    within one folder is atomic. The temporary name ends in `.partial`, so no `*.ckpt` glob sees it.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        with atomic_path(Path(path), suffix=".partial") as tmp:
            torch.save(checkpoint, tmp)
