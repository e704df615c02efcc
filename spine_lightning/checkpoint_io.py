"""Checkpoint files that are either complete or absent: written to a temporary name, then renamed."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint I/O, but the temporary file lives next to the target.

    Lightning's own transaction writes the temporary file in the system temp folder, so its final move
    can be a copy across file systems; a kill during that copy leaves a truncated `last.ckpt`. A rename
    within one folder is atomic. The temporary name ends in `.partial`, so no `*.ckpt` glob sees it.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())  # the data is on disk before the name points at it
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a checkpoint is an ordinary file
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
