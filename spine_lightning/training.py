"""The training task behind `train.py`: build everything from config, fit, test the best
checkpoint, and leave `metrics.json` and `splits.json` in the run directory."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from .config_checks import validate_train_config
from .io import write_json
from .module import SpineSegmentationModule

log = logging.getLogger(__name__)


def _instantiate_all(section: DictConfig | None) -> list:
    """Instantiate every entry of a config section that has a `_target_` (callbacks, loggers)."""
    if not section:
        return []
    return [hydra.utils.instantiate(c) for c in section.values() if isinstance(c, DictConfig) and "_target_" in c]


def build_module(cfg: DictConfig) -> SpineSegmentationModule:
    adv = cfg.loss.adversarial
    return SpineSegmentationModule(
        net=OmegaConf.to_container(cfg.model, resolve=True),
        levels=list(cfg.data.levels),
        lr=cfg.optimizer.lr,
        weight_decay=cfg.optimizer.weight_decay,
        scheduler=cfg.optimizer.scheduler,
        epsilon=float(adv.epsilon),
        perturbation=adv.perturbation,
        lam=float(adv.lam),
        preprocessing=preprocessing_of(cfg),
    )


def preprocessing_of(cfg: DictConfig) -> dict:
    """How crops were made (stored in the checkpoint; predict and eval crop the same way)."""
    return dict(spacing=float(cfg.data.spacing), crop_size=[int(n) for n in cfg.data.crop_size],
                window_hu=[float(w) for w in cfg.data.window_hu])


def train(cfg: DictConfig) -> float | None:
    validate_train_config(cfg)
    out_dir = Path(cfg.paths.output_dir)
    L.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision("high")

    datamodule = hydra.utils.instantiate(cfg.data)
    module = build_module(cfg)
    callbacks = _instantiate_all(cfg.get("callbacks"))
    loggers = _instantiate_all(cfg.get("logger"))
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    if trainer.is_global_zero:
        write_json(out_dir / "splits.json", datamodule.split_of())

    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if not best:
        log.warning("no best checkpoint was saved; testing the last weights")
    trainer.test(module, datamodule=datamodule, ckpt_path=best or None)

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    if trainer.is_global_zero:
        write_json(out_dir / "metrics.json", metrics)
        log.info("test metrics: %s", {k: round(v, 4) for k, v in sorted(metrics.items())})
        log.info("run directory: %s", out_dir)
    for logger in loggers:
        logger.finalize("success")
    if hasattr(L.pytorch.loggers, "WandbLogger") and any(isinstance(lg, L.pytorch.loggers.WandbLogger) for lg in loggers):
        import wandb

        wandb.finish()
    monitor = cfg.get("optimized_metric")
    return float(trainer.callback_metrics[monitor]) if monitor and monitor in trainer.callback_metrics else None
