import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_MODE", "offline")


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
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env)
