"""OmegaConf resolvers used by the configs; importing this module registers them."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf


def sweep_group() -> str:
    """Name of the Hydra multirun directory when running inside a multirun, else "".

    `logger.wandb.group: ${sweep_group:}` puts all runs of one sweep into one W&B group.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return ""
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return ""
    return Path(hydra_cfg.sweep.dir).name


def launch_cwd() -> str:
    """The directory the command was started from: Hydra's runtime.cwd inside a job, else the
    current directory. Unlike `${hydra:runtime.cwd}` it also resolves where Hydra has no job
    config yet, e.g. when a multirun launcher creates `hydra.sweep.dir` from `paths.log_dir`."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.cwd if HydraConfig.initialized() else os.getcwd()


def hydra_choice(group: str) -> str:
    """The option chosen for a config group in this job (e.g. `experiment` -> "edge_adv"), or
    "none". Logged as a plain config value so that W&B can group runs by it (not by tags)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return "none"
    return str(HydraConfig.get().runtime.choices.get(group) or "none")


OmegaConf.register_new_resolver("hydra_choice", hydra_choice, replace=True)
OmegaConf.register_new_resolver("sweep_group", sweep_group, replace=True)
OmegaConf.register_new_resolver("launch_cwd", launch_cwd, replace=True)
