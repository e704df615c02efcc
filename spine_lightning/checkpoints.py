"""Loading trained checkpoints safely: `weights_only=True`, and the architecture checked."""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import SpineError
from .io import atomic_path
from .module import SpineSegmentationModule

NETWORK_TARGET = "spine_lightning.models.GCNResidualFCN"


def _read(path: Path, map_location) -> tuple[dict, SpineSegmentationModule]:
    """The checkpoint's contents and its module with the weights loaded; one-line errors naming the
    file when it is missing, unreadable, not of this project, or its weights do not fit."""
    if not path.is_file():
        raise SpineError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many kinds for a file that is not a checkpoint
        raise SpineError(f"{path}: not a readable PyTorch checkpoint ({type(err).__name__})") from None
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    net = (hparams or {}).get("net")
    if not isinstance(net, dict) or net.get("_target_") != NETWORK_TARGET or "state_dict" not in ckpt:
        raise SpineError(f"{path}: not a spine_lightning segmentation checkpoint (expected a {NETWORK_TARGET} network)")
    module = SpineSegmentationModule(**hparams)
    try:
        module.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError:
        raise SpineError(f"{path}: weights do not match the architecture in its hyper-parameters ({net})") from None
    return ckpt, module


def load_segmentation_module(path: str | Path, map_location: str | torch.device = "cpu") -> SpineSegmentationModule:
    """The trained module of a checkpoint written by `train.py`, in eval mode (see `_read` for the
    checks)."""
    return _read(Path(path), map_location)[1].eval()


def inference_checkpoint(src: str | Path, dst: str | Path) -> None:
    """Write the part of a training checkpoint that prediction needs (weights, hyper-parameters):
    a third of the size, since optimiser and loop state are dropped; it cannot resume training.
    Anything predict would refuse is refused here too.

        python -c "from spine_lightning.checkpoints import inference_checkpoint as f; f('last.ckpt', 'model.ckpt')"
    """
    ckpt, _ = _read(Path(src), "cpu")
    keep = ("state_dict", "hyper_parameters", "hparams_name", "pytorch-lightning_version", "epoch", "global_step")
    with atomic_path(Path(dst)) as tmp:
        torch.save({k: ckpt[k] for k in keep if k in ckpt}, tmp)
