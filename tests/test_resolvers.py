"""Config resolvers: sweep group, experiment name and launch directory, in and out of a Hydra job."""

import os

import pytest
from conftest import ROOT
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

import spine_lightning  # noqa: F401  (registers the resolvers)


@pytest.fixture
def job_config():
    """A composed config installed as the current Hydra job's, as Hydra does before a task runs."""
    def install(overrides, mode=None):
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose("train", overrides=overrides, return_hydra_config=True)
        if mode is not None:
            with open_dict(cfg):
                cfg.hydra.mode = mode
        HydraConfig.instance().set_config(cfg)
        return cfg

    yield install
    HydraConfig.instance().cfg = None


def test_multirun_job_gets_the_sweep_folder_as_group_and_its_experiment_name(job_config):
    cfg = job_config(["+sweep=ablation", "+experiment=edge", "hydra.sweep.dir=/somewhere/ablation_x"])
    assert cfg.logger.wandb.group == "ablation_x" and cfg.experiment_name == "edge"


def test_single_run_has_no_group(job_config):
    cfg = job_config(["+experiment=adv"], mode="RUN")
    assert cfg.logger.wandb.group == "" and cfg.experiment_name == "adv"


def test_outside_hydra_the_launch_dir_is_the_current_dir():
    cfg = OmegaConf.create({"root": "${launch_cwd:}", "group": "${sweep_group:}",
                            "e": "${hydra_choice:experiment}"})
    assert OmegaConf.to_container(cfg, resolve=True) == {"root": os.getcwd(), "group": "", "e": "none"}
