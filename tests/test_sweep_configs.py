"""Sweep, Optuna and SLURM configs compose, and their key settings resolve (no cluster needed)."""

import pytest
from conftest import ROOT, run_cli
from hydra import compose, initialize_config_dir
from hydra.types import RunMode
from omegaconf import OmegaConf

METHODS = ["baseline", "edge", "adv", "edge_adv"]


def composed(overrides):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


def test_ablation_sweep_is_four_methods_by_seeds():
    cfg = composed(["+sweep=ablation"])
    params = cfg.hydra.sweeper.params
    assert params["+experiment"].split(",") == METHODS
    assert len(params["seed"].split(",")) >= 2
    assert cfg.hydra.mode == RunMode.MULTIRUN
    # resolved in each job to the sweep folder's name (checked end to end in test_sweep_wandb.py)
    assert OmegaConf.to_container(cfg.logger.wandb)["group"] == "${sweep_group:}"


@pytest.mark.parametrize("method", METHODS)
def test_each_method_is_tagged_with_its_name(method):
    cfg = composed([f"+experiment={method}"])
    assert list(cfg.logger.wandb.tags) == [method]


def test_optuna_search_composes():
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    cfg = composed(["+hparams_search=optuna"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert cfg.optimized_metric == "val/iou_mean"
    assert set(sweeper.params) == {"loss.adversarial.epsilon", "loss.adversarial.lam", "loss.edge_weight"}
    assert all(v.startswith("interval(") for v in sweeper.params.values())
    result = run_cli(["train.py", "+hparams_search=optuna", "--cfg", "job"], cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "optimized_metric: val/iou_mean" in result.stdout


def test_slurm_launcher_takes_nodes_and_gpus_from_the_trainer():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    overrides = ["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2"]
    cfg = composed(overrides)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.nodes, launcher.gpus_per_node, launcher.tasks_per_node) == (2, 4, 4)
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.num_nodes == 2 and cfg.trainer.accelerator == "gpu"
    result = run_cli(["train.py", *overrides, "--cfg", "job"], cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "num_nodes: 2" in result.stdout
