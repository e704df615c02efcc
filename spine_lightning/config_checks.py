"""Start-up validation of a composed config: wrong values fail before any work, naming the key."""

from __future__ import annotations

from omegaconf import DictConfig

from .data.labels import check_levels
from .errors import ConfigError
from .losses import PERTURBATIONS


def validate_train_config(cfg: DictConfig) -> None:
    check_levels(cfg.data.levels)
    levels = int(cfg.model.levels)
    if levels < 2:
        raise ConfigError("model.levels", levels, "an integer >= 2")
    divisor = 2 ** (levels - 1)
    crop = list(cfg.data.crop_size)
    if len(crop) != 3 or any(int(n) <= 0 or int(n) % divisor for n in crop):
        raise ConfigError(
            "data.crop_size", crop,
            f"three sizes [X, Y, Z], each a positive multiple of {divisor} so that model.levels={levels} "
            f"can halve it {levels - 1} times (e.g. [96, 112, 64])",
        )
    if float(cfg.data.spacing) <= 0:
        raise ConfigError("data.spacing", cfg.data.spacing, "a positive number of millimetres")
    if float(cfg.loss.edge_weight) <= 0:
        raise ConfigError("loss.edge_weight", cfg.loss.edge_weight, "a number > 0 (1.0 disables edge weighting)")
    adv = cfg.loss.adversarial
    if float(adv.epsilon) < 0:
        raise ConfigError("loss.adversarial.epsilon", adv.epsilon, "a number >= 0 (0 disables adversarial training)")
    if adv.perturbation not in PERTURBATIONS:
        raise ConfigError("loss.adversarial.perturbation", adv.perturbation, f"one of {', '.join(PERTURBATIONS)}")
    if float(adv.lam) < 0:
        raise ConfigError("loss.adversarial.lam", adv.lam, "a number >= 0")
    if float(cfg.optimizer.lr) <= 0:
        raise ConfigError("optimizer.lr", cfg.optimizer.lr, "a number > 0")
