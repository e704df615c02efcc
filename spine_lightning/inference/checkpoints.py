"""Reading trained checkpoints safely: `weights_only=True`, the project's network, weights that fit.

The one checkpoint validator: predict, eval, benchmarks and the resume check of train.py all read
checkpoints through `read_checkpoint`. The network is rebuilt from the hyper-parameters stored in
the checkpoint, so inference needs no Lightning module.
"""

from __future__ import annotations

from pathlib import Path

import hydra
import torch
from lightning.fabric.utilities.data import AttributeDict

from spine_lightning.core.errors import SpineError
from spine_lightning.core.io import atomic_path

NETWORK_TARGET = "spine_lightning.models.GCNResidualFCN"
NET_PREFIX = "net."  # the network's weights inside the training module's state_dict
# The model shipped inside the package (its card: bundled/README.md); used when no ckpt_path is given.
BUNDLED_MODEL = Path(__file__).resolve().parent / "bundled" / "spine_lumbar.ckpt"


def checkpoint_path(ckpt_path: str | Path | None) -> Path:
    """The checkpoint to use: the one given, else the model bundled with the package."""
    return Path(ckpt_path) if ckpt_path else BUNDLED_MODEL


class TrainedModel(torch.nn.Module):
    """A checkpoint's network with the hyper-parameters it was trained with (levels, preprocessing);
    called like the network. State-dict keys match those of the training module (`net.*`)."""

    def __init__(self, hparams: dict):
        super().__init__()
        self.hparams = AttributeDict(hparams)
        self.net = hydra.utils.instantiate(dict(hparams["net"]))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def read_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """A checkpoint's contents; one-line errors naming the file when it is missing, unreadable or
    not a checkpoint of this project's network."""
    path = Path(path)
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
    return ckpt


def load_segmentation_module(path: str | Path, map_location: str | torch.device = "cpu") -> TrainedModel:
    """The trained network of a checkpoint written by `train.py`, in eval mode; weights that do not
    fit the architecture in its hyper-parameters are a one-line error."""
    ckpt = read_checkpoint(path, map_location)
    model = TrainedModel(ckpt["hyper_parameters"])
    weights = {k: v for k, v in ckpt["state_dict"].items() if k.startswith(NET_PREFIX)}
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError:
        raise SpineError(
            f"{path}: weights do not match the architecture in its hyper-parameters ({ckpt['hyper_parameters']['net']})"
        ) from None
    return model.to(map_location).eval()


def inference_checkpoint(src: str | Path, dst: str | Path) -> None:
    """Write the part of a training checkpoint that prediction needs (weights, hyper-parameters):
    a third of the size, since optimiser and loop state are dropped; it cannot resume training.
    Anything predict would refuse is refused here too.

        python -c "from spine_lightning.inference.checkpoints import inference_checkpoint as f; \\
            f('last.ckpt', 'model.ckpt')"
    """
    load_segmentation_module(src)
    ckpt = read_checkpoint(src)
    keep = ("state_dict", "hyper_parameters", "hparams_name", "pytorch-lightning_version", "epoch", "global_step")
    with atomic_path(Path(dst)) as tmp:
        torch.save({k: ckpt[k] for k in keep if k in ckpt}, tmp)
