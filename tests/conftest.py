import os
import sys
from pathlib import Path

import pytest

from spine_lightning.inference.checkpoints import BUNDLED_MODEL

ROOT = Path(__file__).resolve().parent.parent
# The first network bundled with the package (its card: spine_lightning/inference/bundled/README.md): a model
# that segments, for tests whose assertions need one (the tiny checkpoint only exercises the plumbing).
DEFAULT_MODEL = BUNDLED_MODEL
DATA = Path(__file__).resolve().parent / "data"
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_MODE", "offline")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Parallel workers share the cores: one thread each (and in the entry points they start) instead
    # of every worker's torch and BLAS spinning threads on every core.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def data_dir() -> Path:
    return DATA


def run_cli(args, cwd, timeout=600, env=None):
    """Run an entry point as a user would; returns CompletedProcess."""
    import subprocess

    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env
    )


# Overrides that make `train.py` run in seconds on any data source: 3 mm crops, a tiny network.
TINY_MODEL = [
    "data.spacing=3.0",
    "data.crop_size=[32,48,32]",
    "data.preprocess_workers=1",
    "model.width=2",
    "model.levels=3",
    "trainer.max_epochs=1",
    "~callbacks.rich_progress_bar",
]
# ... and on three small phantoms (one each for train, val and test).
TINY_TRAIN = [
    "data=phantom",
    "data.subjects.num_train=1",
    "data.subjects.num_val=1",
    "data.subjects.num_test=1",
    "data.subjects.spacing=[1.6,1.6,3.0]",
    *TINY_MODEL,
]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint (and run directory) of a `TINY_TRAIN` run of `train.py`, made once per session."""
    run_dir = tmp_path_factory.mktemp("tiny_run")
    result = run_cli(["train.py", *TINY_TRAIN, "logger=csv", f"hydra.run.dir={run_dir}"], cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir / "checkpoints" / "last.ckpt"


# Tests that train (the tiny checkpoint, DDP runs, train.py end to end) take from 20 s to minutes:
# marked `slow` so that `pytest -m "not slow"` is the quick loop.
SLOW_FIXTURES = {"tiny_checkpoint", "ddp_sweep", "ddp_run"}
SLOW_MODULES = {"test_ddp.py", "test_train_cli.py", "test_resume.py", "test_sweep_wandb.py",
                "test_real_sources_cli.py", "test_benchmarks_smoke.py", "test_learning.py",
                "test_finetune.py"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        train_cli = item.path.name == "test_bad_inputs.py"  # every case runs train.py
        if item.path.name in SLOW_MODULES or train_cli or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
