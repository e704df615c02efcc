"""Non-finite losses, finite-only best checkpoints, atomic checkpoint files, resumable random state,
the choice of the run to resume, and that the shipped configs pass start-up validation."""

import os
import random
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from conftest import ROOT
from hydra import compose, initialize_config_dir
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from omegaconf import OmegaConf

from spine_lightning.core.errors import SpineError
from spine_lightning.training.callbacks import FiniteModelCheckpoint, RngStateCheckpoint
from spine_lightning.training.checkpoint_io import AtomicCheckpointIO
from spine_lightning.training.config_checks import validate_train_config
from spine_lightning.training.module import SpineSegmentationModule
from spine_lightning.training.resume import find_resumable_run, register_resolvers, wandb_run_id

NET = dict(_target_="spine_lightning.models.GCNResidualFCN", width=2, levels=2, convs=1, kernel=3,
           gcn_kernel=3)


def _batches(n, nan_at=()):
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        image = torch.rand(1, 1, 8, 8, 8, generator=g)
        if i in nan_at:
            image[0, 0, 0, 0, 0] = float("nan")
        target = (torch.rand(1, 8, 8, 8, generator=g) > 0.5).long()
        out.append(dict(image=image, target=target, weights=torch.ones(1, 8, 8, 8), level=["L2"],
                        subject=[f"case-{i}"]))
    return out


def _trainer(tmp_path, **kw):
    args = dict(accelerator="cpu", max_epochs=1, logger=False, enable_progress_bar=False,
                enable_model_summary=False, default_root_dir=tmp_path, limit_val_batches=0,
                enable_checkpointing=False, num_sanity_val_steps=0)
    return L.Trainer(**{**args, **kw})


def _fit(module, trainer, train, val=None):
    loaders = dict(train_dataloaders=[*train])
    if val is not None:
        loaders["val_dataloaders"] = [*val]
    trainer.fit(module, **{k: torch.utils.data.DataLoader(v, batch_size=None) for k, v in loaders.items()})


@pytest.mark.parametrize("epsilon", [0.0, 0.05])
def test_nonfinite_loss_stops_naming_step_and_subjects(tmp_path, epsilon):
    module = SpineSegmentationModule(net=NET, levels=["L2"], epsilon=epsilon)
    with pytest.raises(SpineError, match=r"non-finite L_st at global step 1 on subjects case-1"):
        _fit(module, _trainer(tmp_path), _batches(3, nan_at={1}))


@pytest.mark.parametrize("epsilon", [0.0, 0.05])
def test_nonfinite_loss_skip_counts_and_keeps_weights_finite(tmp_path, epsilon):
    module = SpineSegmentationModule(net=NET, levels=["L2"], epsilon=epsilon, nonfinite="skip")
    trainer = _trainer(tmp_path)
    _fit(module, trainer, _batches(4, nan_at={1, 2}))
    assert module.skipped_batches == 2
    assert trainer.global_step == 2  # only the two finite batches stepped the optimiser
    assert all(torch.isfinite(p).all() for p in module.parameters())
    path = tmp_path / "skip.ckpt"
    trainer.save_checkpoint(path)
    restored = SpineSegmentationModule(net=NET, levels=["L2"])
    restored.on_load_checkpoint(torch.load(path, weights_only=True))
    assert restored.skipped_batches == 2


class _PoisonWeights(Callback):
    """Makes the weights NaN before the first validation, as a diverged optimiser step would."""

    def on_validation_start(self, trainer, pl_module):
        with torch.no_grad():
            next(pl_module.parameters()).fill_(float("nan"))


@pytest.mark.parametrize("monitor,mode", [("val/loss", "min"), ("val/iou_mean", "max")])
@pytest.mark.parametrize("checkpoint_cls,kept", [(ModelCheckpoint, True), (FiniteModelCheckpoint, False)])
def test_nan_model_is_never_best(tmp_path, monitor, mode, checkpoint_cls, kept):
    """Stock ModelCheckpoint keeps a diverged first epoch as best; ours keeps only last.ckpt."""
    ckpt = checkpoint_cls(dirpath=tmp_path / "ckpt", monitor=monitor, mode=mode, save_last=True, save_top_k=1)
    trainer = _trainer(tmp_path, enable_checkpointing=True, callbacks=[ckpt, _PoisonWeights()],
                       limit_val_batches=None)
    module = SpineSegmentationModule(net=NET, levels=["L2"], nonfinite="skip")
    _fit(module, trainer, _batches(2), _batches(1))
    assert bool(ckpt.best_model_path) is kept
    assert (tmp_path / "ckpt" / "last.ckpt").is_file()


class _FrozenScore(Callback):
    """Logs the same validation score every epoch: only the first epoch is a best."""

    def on_validation_epoch_end(self, trainer, pl_module):
        pl_module.log("val/frozen", 0.5)


def test_last_checkpoint_is_the_latest_epoch_not_the_best(tmp_path):
    """last.ckpt must hold the newest state (the one to resume from) after epochs without a new best;
    Lightning 2.6's own ModelCheckpoint leaves it at the best epoch."""
    ckpt = FiniteModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val/frozen", mode="max", save_last=True,
                                 save_top_k=1)
    trainer = _trainer(tmp_path, max_epochs=3, enable_checkpointing=True, callbacks=[ckpt, _FrozenScore()],
                       limit_val_batches=None)
    _fit(SpineSegmentationModule(net=NET, levels=["L2"]), trainer, _batches(2), _batches(1))
    assert torch.load(ckpt.best_model_path, weights_only=True)["epoch"] == 0
    last = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 2 and last["global_step"] == trainer.global_step == 6


def test_atomic_checkpoint_io_never_leaves_a_partial_file(tmp_path):
    io, path = AtomicCheckpointIO(), tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(2)}}, path)
    assert torch.equal(torch.load(path, weights_only=True)["state_dict"]["w"], torch.ones(2))
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
    with pytest.raises(Exception):  # noqa: B017 - pickling a lambda fails midway through the write
        io.save_checkpoint({"state_dict": {"w": torch.zeros(2)}, "bad": lambda: None}, path)
    old_one = torch.load(path, weights_only=True)["state_dict"]["w"]
    assert torch.equal(old_one, torch.ones(2))
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]


def test_rng_state_survives_a_weights_only_checkpoint(tmp_path):
    callback = RngStateCheckpoint()
    torch.save(callback.state_dict(), tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    callback.load_state_dict(torch.load(tmp_path / "rng.pt", weights_only=True))
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]) and got[2] == expected[2]


def _fake_run(runs: Path, name: str, overrides: list[str], finished=False, mtime=0.0) -> Path:
    run = runs / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(OmegaConf.to_yaml(overrides))
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    os.utime(run / "checkpoints" / "last.ckpt", (mtime, mtime))
    if finished:
        (run / "metrics.json").write_text("{}")
    return run


def test_auto_resume_picks_newest_unfinished_run_with_same_overrides(tmp_path):
    runs = tmp_path / "runs"
    _fake_run(runs, "a_old", ["+experiment=edge"], mtime=1000)
    newest = _fake_run(runs, "b_new", ["+experiment=edge", "hydra.run.dir=x"], mtime=2000)
    _fake_run(runs, "c_finished", ["+experiment=edge"], finished=True, mtime=3000)
    _fake_run(runs, "d_other", ["+experiment=adv"], mtime=4000)
    assert find_resumable_run(runs, ["+experiment=edge", "auto_resume=true"]) == newest
    assert find_resumable_run(runs, ["+experiment=baseline", "auto_resume=true"]) is None

    register_resolvers()
    cfg = OmegaConf.create({"task_name": "train", "ckpt_path": None, "auto_resume": True,
                            "hydra": {"overrides": {"task": ["+experiment=edge", "auto_resume=true"]}},
                            "dir": f"${{spine_run_dir:{runs},fresh}}"})
    assert cfg.dir == str(newest)
    cfg.auto_resume = False
    assert cfg.dir == str(runs / "fresh")
    cfg.ckpt_path = str(runs / "a_old" / "checkpoints" / "last.ckpt")
    assert cfg.dir == str(runs / "a_old")


def test_wandb_run_id_is_stored_once_per_run_dir(tmp_path):
    first = wandb_run_id(tmp_path)
    assert len(first) == 8 and first.isalnum() and first == first.lower()
    assert wandb_run_id(tmp_path) == first == (tmp_path / "wandb_run_id.txt").read_text().strip()


@pytest.mark.parametrize("overrides", [[], ["+experiment=edge_adv"], ["+experiment=baseline", "model=paper"],
                                       ["debug=overfit"]])
def test_shipped_configs_pass_validation(overrides):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
        assert validate_train_config(cfg) is None  # raises ConfigError on any value it refuses
        assert all(n % 2 ** (cfg.model.levels - 1) == 0 for n in cfg.data.crop_size)
