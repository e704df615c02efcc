"""Start-up validation of a composed config: wrong values fail before any work, naming the key, the
value and what is allowed."""

from __future__ import annotations

import math
import os
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from spine_lightning.core.errors import ConfigError, SpineError
from spine_lightning.data.augmentation import build_augmentation
from spine_lightning.data.crops import OUTSIDE_MODES
from spine_lightning.data.labels import check_levels
from spine_lightning.inference.checkpoints import BUNDLED_MODEL, read_checkpoint
from spine_lightning.training.losses import PERTURBATIONS

_MISSING = object()
NONFINITE_MODES = ("stop", "skip")
PRECISIONS = ("64", "64-true", "32", "32-true", "16", "16-mixed", "16-true", "bf16", "bf16-mixed",
              "bf16-true", "transformer-engine")


def _value(cfg: DictConfig, key: str):
    """The value at a dotted key; a missing key is a ConfigError, not an AttributeError traceback."""
    value = OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=False)
    if value is _MISSING or value == "???":
        raise ConfigError(key, "<missing>", "the key is required; it comes with the default config")
    return value


def _number(cfg: DictConfig, key: str, allowed: str, ok=lambda v: True, integer: bool = False) -> float:
    value = _value(cfg, key)
    is_num = isinstance(value, int | float) and not isinstance(value, bool)
    if not is_num or (integer and not float(value).is_integer()) or not math.isfinite(value) or not ok(value):
        raise ConfigError(key, value, allowed)
    return int(value) if integer else float(value)


def _choice(cfg: DictConfig, key: str, choices) -> str:
    value = _value(cfg, key)
    if value not in choices:
        raise ConfigError(key, value, "one of " + ", ".join(str(c) for c in choices))
    return value


def _check_data(cfg: DictConfig) -> None:
    levels = _value(cfg, "data.levels")
    if not isinstance(levels, ListConfig | list):
        raise ConfigError("data.levels", levels, "a list of level names, e.g. [L2,L3,L4,L5]")
    check_levels(levels)
    model_levels = _number(cfg, "model.levels", "an integer >= 2", lambda v: v >= 2, integer=True)
    divisor = 2 ** (model_levels - 1)
    crop = _value(cfg, "data.crop_size")
    if (not isinstance(crop, ListConfig | list) or len(crop) != 3
            or any(isinstance(n, bool) or not isinstance(n, int) or n <= 0 or n % divisor for n in crop)):
        raise ConfigError(
            "data.crop_size", OmegaConf.to_object(crop) if isinstance(crop, ListConfig) else crop,
            f"three sizes [X, Y, Z], each a positive multiple of {divisor} so that "
            f"model.levels={model_levels} can halve it {model_levels - 1} times (e.g. [96, 112, 64])",
        )
    _number(cfg, "data.spacing", "a positive number of millimetres", lambda v: v > 0)
    window = _value(cfg, "data.window_hu")
    if (not isinstance(window, ListConfig | list) or len(window) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in window)
            or not window[0] < window[1]):
        raise ConfigError("data.window_hu", window, "[low, high] in HU with low < high, e.g. [-1000, 2000]")
    _number(cfg, "data.batch_size", "an integer >= 1", lambda v: v >= 1, integer=True)
    _number(cfg, "data.num_workers", "an integer >= 0", lambda v: v >= 0, integer=True)
    _number(cfg, "data.preprocess_workers", "an integer >= 1", lambda v: v >= 1, integer=True)
    if OmegaConf.select(cfg, "data.outside_scan") is not None:
        _choice(cfg, "data.outside_scan", OUTSIDE_MODES)


def _check_loss_and_optimizer(cfg: DictConfig) -> None:
    _number(cfg, "loss.edge_weight", "a number > 0 (1.0 disables edge weighting)", lambda v: v > 0)
    _number(cfg, "loss.adversarial.epsilon", "a number >= 0 (0 disables adversarial training)",
            lambda v: v >= 0)
    _choice(cfg, "loss.adversarial.perturbation", PERTURBATIONS)
    _number(cfg, "loss.adversarial.lam", "a number >= 0", lambda v: v >= 0)
    _number(cfg, "optimizer.lr", "a number > 0", lambda v: v > 0)
    _number(cfg, "optimizer.weight_decay", "a number >= 0", lambda v: v >= 0)
    _choice(cfg, "optimizer.scheduler", ("cosine", None))
    _choice(cfg, "nonfinite_loss", NONFINITE_MODES)


def available_devices(accelerator: str) -> int:
    """How many devices of a kind this machine has (CPU: cores)."""
    import torch

    if accelerator in ("gpu", "cuda"):
        return torch.cuda.device_count()
    if accelerator == "mps":
        return int(torch.backends.mps.is_available())
    if accelerator == "cpu":
        return os.cpu_count() or 1
    return -1  # auto / tpu / others: Lightning decides


def _check_trainer(cfg: DictConfig) -> None:
    # The cosine schedule anneals over max_epochs (T_max): it needs a finite count.
    cosine = cfg.get("optimizer", {}).get("scheduler") == "cosine"
    max_epochs = _number(cfg, "trainer.max_epochs",
                         "an integer >= 1 (-1, no limit, only with optimizer.scheduler=null: "
                         "the cosine schedule needs a finite epoch count)" if cosine
                         else "an integer >= 1 (or -1: no limit)",
                         lambda v: v >= 1 or (v == -1 and not cosine), integer=True)
    min_epochs = cfg.trainer.get("min_epochs")
    if min_epochs is not None:
        _number(cfg, "trainer.min_epochs", f"an integer >= 0 and <= trainer.max_epochs={max_epochs}",
                lambda v: v >= 0 and (max_epochs == -1 or v <= max_epochs), integer=True)
    precision = str(_value(cfg, "trainer.precision"))
    if precision not in PRECISIONS:
        raise ConfigError("trainer.precision", precision, "one of " + ", ".join(PRECISIONS))
    accelerator = str(_value(cfg, "trainer.accelerator"))
    devices = _value(cfg, "trainer.devices")
    have = available_devices(accelerator)
    if accelerator in ("gpu", "cuda", "mps") and have == 0:
        raise ConfigError("trainer.accelerator", accelerator,
                          f"an accelerator this machine has: no {accelerator} device found (use trainer=cpu)")
    if isinstance(devices, bool) or (isinstance(devices, int) and (devices == 0 or devices < -1)):
        raise ConfigError("trainer.devices", devices,
                          "a count >= 1, -1 (all), 'auto' or a list of device indices")
    wanted = len(devices) if isinstance(devices, ListConfig | list) else devices
    if isinstance(wanted, int) and have >= 0 and wanted > have:
        raise ConfigError("trainer.devices", OmegaConf.to_object(devices) if isinstance(devices, ListConfig)
                          else devices, f"at most {have}: this machine has {have} {accelerator} device(s)")


def perturbations_of(cfg: DictConfig) -> dict[str, dict]:
    """`test_perturbations` as {name: augmentation config}, each one buildable ({} when null)."""
    value = cfg.get("test_perturbations")
    if not value:
        return {}
    if not isinstance(value, DictConfig):
        raise ConfigError("test_perturbations", value, "null or {name: augmentation config with p: 1}")
    perturbations = OmegaConf.to_container(value, resolve=True)
    for name, config in perturbations.items():
        if not isinstance(config, dict) or not config:
            raise ConfigError(f"test_perturbations.{name}", config,
                              "an augmentation config, e.g. {noise: {p: 1, std_hu: [60, 60]}}")
        try:
            build_augmentation(config)
        except ConfigError as err:  # named by where it was set, not by the augmentation group
            raise ConfigError(err.key.replace("augmentation", f"test_perturbations.{name}", 1), err.value,
                              err.allowed) from None
    return perturbations


def validate_train_config(cfg: DictConfig) -> None:
    """Every check that needs only the config; run before anything is built or written."""
    _check_data(cfg)
    _check_loss_and_optimizer(cfg)
    _check_trainer(cfg)
    _number(cfg, "seed", "an integer", integer=True)
    perturbations_of(cfg)
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path is not None and cfg.get("auto_resume"):
        raise ConfigError("auto_resume", True,
                          "false when ckpt_path is given (one way to choose the checkpoint)")
    if ckpt_path is not None:
        check_checkpoint_network(ckpt_path, cfg.model)
    init_weights = cfg.get("init_weights")
    if init_weights is not None:
        if ckpt_path is not None or cfg.get("auto_resume"):
            raise ConfigError("init_weights", init_weights,
                              "null when resuming (ckpt_path, auto_resume): a resumed run has its own weights")
        check_checkpoint_network(initial_weights_path(init_weights), cfg.model)


def initial_weights_path(init_weights) -> Path:
    """`init_weights`: a checkpoint file, or `bundled`: the first (width-12) network packaged with the project."""
    return BUNDLED_MODEL if str(init_weights) == "bundled" else Path(str(init_weights))


def check_checkpoint_network(path: str | Path, model_cfg: DictConfig) -> None:
    """A checkpoint to resume or start from must be readable with `weights_only=True` and hold the
    network the config asks for; otherwise Lightning would fail later with a long traceback."""
    net = read_checkpoint(path)["hyper_parameters"]["net"]
    wanted = OmegaConf.to_container(model_cfg, resolve=True)
    if net != wanted:
        diff = {k: (net.get(k), wanted.get(k)) for k in sorted(set(net) | set(wanted))
                if net.get(k) != wanted.get(k)}
        raise SpineError(f"{path}: its network differs from the model config "
                         f"(key: (checkpoint, config): {diff})")
