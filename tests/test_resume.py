"""Resume after SIGKILL: same run directory, same W&B run id, and the same final result as a run
that was never interrupted (fixed seed, deterministic mode)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT, TINY_TRAIN, run_cli

# Deterministic, and the best checkpoint is the last epoch's (val/loss falls every epoch), so the
# test metrics depend on the whole training trajectory, not just on epoch 0.
RESUMABLE = [a for a in TINY_TRAIN if not a.startswith("trainer.max_epochs")] + [
    "trainer.max_epochs=2",
    "trainer.deterministic=true",
    "callbacks.model_checkpoint.monitor=val/loss",
    "callbacks.model_checkpoint.mode=min",
]


def _start(args, cwd):
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true")
    return subprocess.Popen([sys.executable, "train.py", *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _kill_after_first_checkpoint(args, run_dir, cwd, timeout=300):
    proc = _start(args, cwd)
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + timeout
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, f"run ended before it could be killed:\n{stderr[-2000:]}"


def _wandb_ids(run_dir):
    return sorted({p.name.rsplit("-", 1)[1] for p in (run_dir / "wandb").glob("offline-run-*")})


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An uninterrupted run, and alongside it (to save wall time) a run SIGKILLed right after its first
    checkpoint: that one has `last.ckpt` but no `metrics.json`."""
    uninterrupted = tmp_path_factory.mktemp("uninterrupted") / "run"
    killed = tmp_path_factory.mktemp("killed") / "run"
    proc = _start([*RESUMABLE, f"hydra.run.dir={uninterrupted}"], ROOT)
    _kill_after_first_checkpoint([*RESUMABLE, f"hydra.run.dir={killed}"], killed, ROOT)
    assert not (killed / "metrics.json").exists()
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    return uninterrupted, killed


@pytest.fixture(scope="module")
def uninterrupted(runs):
    return runs[0]


@pytest.fixture(scope="module")
def killed(runs):
    return runs[1]


def test_killed_run_leaves_only_complete_checkpoints(killed):
    ckpts = sorted((killed / "checkpoints").iterdir())
    assert "last.ckpt" in [p.name for p in ckpts]
    for path in ckpts:
        assert path.suffix == ".ckpt", f"leftover temporary file {path.name}"
        assert "state_dict" in torch.load(path, map_location="cpu", weights_only=True)


def test_resume_from_last_ckpt_equals_uninterrupted_run(killed, uninterrupted):
    wandb_before = _wandb_ids(killed)
    # no hydra.run.dir: the checkpoint's run directory is chosen by itself
    result = run_cli(["train.py", *RESUMABLE, f"ckpt_path={killed / 'checkpoints' / 'last.ckpt'}"], cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Restored all states from the checkpoint" in result.stdout + result.stderr

    resumed = json.loads((killed / "metrics.json").read_text())
    expected = json.loads((uninterrupted / "metrics.json").read_text())
    assert resumed.keys() == expected.keys() and "test/iou_mean" in resumed
    assert resumed == expected
    got, want = _weights(killed / "checkpoints/last.ckpt"), _weights(uninterrupted / "checkpoints/last.ckpt")
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)

    assert len(wandb_before) == 1 and _wandb_ids(killed) == wandb_before  # same W&B run id, continued
    assert len(list((killed / "wandb").glob("offline-run-*"))) == 2


@pytest.mark.parametrize("task", ["train", "eval", "predict"])
def test_only_training_resumes_into_the_checkpoints_run(tmp_path, task):
    """eval/predict given a run's checkpoint must not write into (and over) that run's folder."""
    from omegaconf import OmegaConf

    from spine_lightning.training.resume import resolve_run_dir

    run = tmp_path / "logs" / "train" / "runs" / "old"
    (run / ".hydra").mkdir(parents=True)
    root = OmegaConf.create({"task_name": task, "ckpt_path": str(run / "checkpoints" / "epoch_001.ckpt")})
    runs_dir = tmp_path / "logs" / task / "runs"
    chosen = resolve_run_dir(str(runs_dir), "fresh", _root_=root)
    assert chosen == (str(run) if task == "train" else str(runs_dir / "fresh"))
