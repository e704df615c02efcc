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

from spine_lightning.core.errors import ConfigError, SpineError
from spine_lightning.core.io import atomic_path
from spine_lightning.inference.segment import preprocessing_of
from spine_lightning.models.memory_format import use_channels_last

NETWORK_TARGET = "spine_lightning.models.GCNResidualFCN"
NET_PREFIX = "net."  # the network's weights inside the training module's state_dict
# The models shipped inside the package (their card: bundled/README.md), used together as one
# ensemble when no ckpt_path is given; the first is the stronger alone (init_weights=bundled trains it on).
BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
BUNDLED_MODELS = (BUNDLED_DIR / "spine_lumbar.ckpt", BUNDLED_DIR / "spine_lumbar_width8.ckpt")
BUNDLED_MODEL = BUNDLED_MODELS[0]


def checkpoint_paths(ckpt_path) -> list[Path]:
    """The checkpoints to use: the one given, the list given (an ensemble), else the bundled models."""
    if ckpt_path is None or ckpt_path == "":
        return list(BUNDLED_MODELS)
    if isinstance(ckpt_path, (str, Path)):
        return [Path(ckpt_path)]
    if not len(ckpt_path):
        raise ConfigError("ckpt_path", [], "a checkpoint, a list of them, or null for the bundled models")
    return [Path(p) for p in ckpt_path]


PRECISIONS = ("auto", "bf16", "fp32")


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bfloat16 in hardware (a CPU with AVX512-BF16 or AMX, a recent GPU);
    elsewhere bf16 is emulated and slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    flags = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch has only private helpers for these
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in flags)


class TrainedModel(torch.nn.Module):
    """A checkpoint's network with the hyper-parameters it was trained with (levels, preprocessing);
    called like the network, returning float32 logits. State-dict keys match those of the training
    module (`net.*`). `bf16`: run the network under bfloat16 autocast."""

    def __init__(self, hparams: dict, bf16: bool = False):
        super().__init__()
        self.hparams = AttributeDict(hparams)
        self.net = hydra.utils.instantiate(dict(hparams["net"]))
        self.bf16 = bf16

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self.net(x).float()


class Ensemble(torch.nn.Module):
    """Several trained networks used as one, as nnU-Net averages its folds: the mean of their softmax
    probabilities, returned as log-probabilities so that a softmax of the output is that mean (how
    prediction reads any network). The members must crop alike and segment the same levels."""

    def __init__(self, members: list[TrainedModel], paths: list[Path]):
        super().__init__()
        for member, path in zip(members[1:], paths[1:], strict=True):
            for key, of in (("levels", lambda m: list(m.hparams.levels)), ("preprocessing", preprocessing_of)):
                if of(member) != of(members[0]):
                    raise SpineError(f"{path}: its {key} differs from that of {paths[0]}; the members of an "
                                     "ensemble must crop alike and segment the same levels")
        self.members = torch.nn.ModuleList(members)
        self.hparams = members[0].hparams

    @property
    def bf16(self) -> bool:
        return any(m.bf16 for m in self.members)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.stack([torch.softmax(m(x), dim=1) for m in self.members]).mean(dim=0)
        return torch.log(mean.clamp_min(1e-12))


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


def load_segmentation_module(path: str | Path, map_location: str | torch.device = "cpu",
                             precision: str = "fp32") -> TrainedModel:
    """The trained network of a checkpoint written by `train.py`, in eval mode and channels-last-3d
    (as training runs by default; 1.14x a forward pass of the bundled network on a 2-core CPU, the
    same output to 1e-5); weights that do not fit the architecture in its hyper-parameters are a
    one-line error. `precision`: fp32, bf16 (autocast), or auto (bf16 where the device computes it
    in hardware: 1.8x again on a 2-core AVX512-BF16 CPU, IoU within 0.0005 on the real scans;
    benchmarks/results/inference_modes.md)."""
    if precision not in PRECISIONS:
        raise ConfigError("precision", precision, " or ".join(PRECISIONS))
    ckpt = read_checkpoint(path, map_location)
    bf16 = precision == "bf16" or (precision == "auto" and native_bf16(torch.device(map_location)))
    model = TrainedModel(ckpt["hyper_parameters"], bf16)
    weights = {k: v for k, v in ckpt["state_dict"].items() if k.startswith(NET_PREFIX)}
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError:
        raise SpineError(
            f"{path}: weights do not match the architecture in its hyper-parameters ({ckpt['hyper_parameters']['net']})"
        ) from None
    use_channels_last(model.net)
    return model.to(map_location).eval()


def load_model(paths: list[Path], map_location: str | torch.device = "cpu",
               precision: str = "fp32") -> TrainedModel | Ensemble:
    """The network of one checkpoint, or the ensemble of several (`checkpoint_paths`)."""
    members = [load_segmentation_module(p, map_location, precision) for p in paths]
    return members[0] if len(members) == 1 else Ensemble(members, paths)


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
