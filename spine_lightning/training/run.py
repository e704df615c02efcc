"""The training task behind `train.py`: build everything from config, fit, test the best
checkpoint, and leave `metrics.json` and `splits.json` in the run directory."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from spine_lightning.core.errors import SpineError
from spine_lightning.core.io import atomic_path, write_json
from spine_lightning.core.resolvers import sweep_group  # noqa: F401  (registers ${sweep_group:} for logger.wandb.group)
from spine_lightning.inference.checkpoints import load_segmentation_module
from spine_lightning.training.callbacks import has_nonfinite_parameters
from spine_lightning.training.config_checks import (
    check_checkpoint_network,
    initial_weights_path,
    perturbations_of,
    validate_train_config,
)
from spine_lightning.training.ddp_hydra import end_ddp_job, start_ranks_as_job_runs
from spine_lightning.training.module import SpineSegmentationModule
from spine_lightning.training.resume import checkpoint_to_resume, wandb_run_id
from spine_lightning.training.speed import apply_speed_options

log = logging.getLogger(__name__)


def _instantiate_all(section: DictConfig | None) -> list:
    """Instantiate every entry of a config section that has a `_target_` (callbacks, loggers)."""
    if not section:
        return []
    return [hydra.utils.instantiate(c) for c in section.values() if isinstance(c, DictConfig) and "_target_" in c]


def _instantiate_loggers(section: DictConfig | None, out_dir: Path) -> list:
    """Loggers from config; W&B gets this run directory's stored run id, so a resumed run continues it."""
    loggers = []
    for c in (section or {}).values():
        if not (isinstance(c, DictConfig) and "_target_" in c):
            continue
        if str(c._target_).endswith("WandbLogger") and c.get("id") is None:
            loggers.append(hydra.utils.instantiate(c, id=wandb_run_id(out_dir), resume="allow"))
        else:
            loggers.append(hydra.utils.instantiate(c))
    return loggers


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
        nonfinite=cfg.get("nonfinite_loss", "stop"),
        preprocessing=preprocessing_of(cfg),
    )


def preprocessing_of(cfg: DictConfig) -> dict:
    """How crops were made (stored in the checkpoint; predict and eval crop the same way)."""
    return dict(
        spacing=float(cfg.data.spacing),
        crop_size=[int(n) for n in cfg.data.crop_size],
        window_hu=[float(w) for w in cfg.data.window_hu],
    )


def test_all_conditions(cfg: DictConfig, trainer: L.Trainer, module, datamodule, ckpt_path) -> tuple[dict, list]:
    """Test the chosen weights on the clean test crops (`test/...`), then once per entry of
    `test_perturbations` on perturbed copies of them (`test_<name>/...`): robustness measured, not
    assumed. Returns every test metric and one row per crop and condition."""
    metrics, cases = {}, []
    conditions = {"": None, **perturbations_of(cfg)}
    for name, perturbation in conditions.items():
        module.test_prefix = f"test_{name}" if name else "test"
        datamodule.perturb_test(perturbation)
        L.seed_everything(cfg.seed, workers=True)  # the same noise for every method of a study
        trainer.test(module, datamodule=datamodule, ckpt_path=ckpt_path, verbose=not name)
        metrics |= {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(module.test_prefix + "/")}
        cases += module.test_cases
    module.test_prefix = "test"
    datamodule.perturb_test(None)
    return metrics, cases


def write_cases(path: Path, cases: list[dict]) -> None:
    """One row per test crop and condition: what a paired test over seeds x cases needs."""
    columns = ["condition", "source", "subject", "level", "iou", "dice"]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(sorted(cases, key=lambda c: (c["condition"], c["subject"], c["level"])))


def train(cfg: DictConfig) -> float | None:
    validate_train_config(cfg)
    out_dir = Path(cfg.paths.output_dir)
    ckpt_path = checkpoint_to_resume(cfg.get("ckpt_path"), bool(cfg.get("auto_resume")), out_dir)
    if ckpt_path and not cfg.get("ckpt_path"):  # found by auto_resume; an explicit one is checked above
        check_checkpoint_network(ckpt_path, cfg.model)
    L.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision("high")

    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.check_subjects()  # ids unique, every split filled: before any work
    module = build_module(cfg)
    if cfg.get("init_weights"):  # fine-tuning: the network's weights only; optimiser and schedule start fresh
        path = initial_weights_path(cfg.init_weights)
        module.net.load_state_dict(load_segmentation_module(path).net.state_dict())
        log.info("network weights initialised from %s", path)
    apply_speed_options(
        module.net,
        channels_last=bool(cfg.get("channels_last", False)),
        compile=bool(cfg.get("compile", False)),
        accelerator=cfg.trainer.get("accelerator"),
    )
    start_ranks_as_job_runs()  # DDP in a multirun: other ranks rerun this job, not the sweep
    callbacks = _instantiate_all(cfg.get("callbacks"))
    loggers = _instantiate_loggers(cfg.get("logger"), out_dir)
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    if trainer.is_global_zero:
        write_json(out_dir / "splits.json", datamodule.split_of())

    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    if module.skipped_batches:
        log.warning("%d training batches were skipped for a non-finite loss", module.skipped_batches)
    monitor = cfg.get("optimized_metric")
    # read before testing, which changes the logged metrics
    fit_score = trainer.callback_metrics.get(monitor) if monitor else None
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if not best and has_nonfinite_parameters(module):
        raise SpineError("training diverged: the weights are not finite and no best checkpoint was kept")
    if not best:
        log.warning("no best checkpoint was saved; testing the last weights")
    metrics, cases = test_all_conditions(cfg, trainer, module, datamodule, best or None)
    if trainer.is_global_zero:
        write_json(out_dir / "metrics.json", metrics)
        write_cases(out_dir / "test_cases.csv", cases)
        log.info("test metrics: %s", {k: round(v, 4) for k, v in sorted(metrics.items())})
        log.info("run directory: %s", out_dir)
    for logger in loggers:
        logger.finalize("success")
    if hasattr(L.pytorch.loggers, "WandbLogger") and any(
        isinstance(lg, L.pytorch.loggers.WandbLogger) for lg in loggers
    ):
        import wandb

        wandb.finish()
    end_ddp_job()  # the next job of a multirun starts its own ranks and process group
    score = trainer.callback_metrics.get(monitor, fit_score) if monitor else None
    return None if score is None else float(score)
