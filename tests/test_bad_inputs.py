"""Catalogue of bad inputs: each entry point must answer with one line that names the file or config
key, a non-zero exit, no Python traceback (unless SPINE_LIGHTNING_DEBUG=1) and no half-written output.

Table-driven: append a `BadInput` to CATALOGUE for a new entry point or a new kind of bad input.
`args` may be a callable that builds the bad files in a temporary folder and returns the arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from conftest import ROOT, TINY_TRAIN, run_cli

from spine_lightning.training.module import SpineSegmentationModule


@dataclass(frozen=True)
class BadInput:
    id: str
    entry: str  # the script, e.g. "train.py"
    args: list[str] | Callable[[Path], list[str]]
    names: str | Callable[[Path], str]  # what the last stderr line must name: the key or the file
    also: tuple[str, ...] = ()  # further words the last line must hold
    env: dict = field(default_factory=dict)


TINY_NET = dict(
    _target_="spine_lightning.models.GCNResidualFCN",
    in_channels=1,
    num_classes=2,
    width=2,
    levels=3,
    convs=1,
    kernel=3,
    gcn_kernel=7,
)  # the network TINY_TRAIN asks for


def _corrupt_checkpoint(tmp: Path) -> list[str]:
    (tmp / "corrupt.ckpt").write_bytes(b"PK\x03\x04 this is not a torch checkpoint" * 10)
    return [f"ckpt_path={tmp / 'corrupt.ckpt'}"]


def _other_architecture_checkpoint(tmp: Path) -> list[str]:
    module = SpineSegmentationModule(net=dict(TINY_NET, width=4), levels=["L2"])
    ckpt = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    torch.save(ckpt, tmp / "wide.ckpt")
    return [f"ckpt_path={tmp / 'wide.ckpt'}"]


def _output_under_a_file(tmp: Path) -> list[str]:
    (tmp / "a_file").write_text("")
    return [f"hydra.run.dir={tmp / 'a_file' / 'run'}"]


def _phantom(id_: str, seed: int, split: str) -> str:
    return f"{{_target_:spine_lightning.data.sources.PhantomSubject,id:{id_},seed:{seed},split:{split}}}"


CATALOGUE = [
    # train: config keys, checked before any work
    BadInput("unknown_experiment", "train.py", ["+experiment=papper"], "experiment=papper", ("allowed",)),
    BadInput("unknown_model", "train.py", ["model=huge"], "model=huge", ("cpu", "paper")),
    BadInput("crop_not_divisible", "train.py", ["data.crop_size=[30,48,32]"], "data.crop_size", ("multiple of 4",)),
    BadInput("outside_scan_unknown", "train.py", ["data.outside_scan=mirror"], "data.outside_scan", ("repeat",)),
    BadInput("negative_epsilon", "train.py", ["loss.adversarial.epsilon=-0.1"], "loss.adversarial.epsilon"),
    BadInput("edge_weight_zero", "train.py", ["loss.edge_weight=0"], "loss.edge_weight", ("> 0",)),
    BadInput("unknown_level", "train.py", ["data.levels=[L2,L9]"], "data.levels", ("L9",)),
    BadInput("wrong_type", "train.py", ["data.batch_size=two"], "data.batch_size", ("'two'", "integer")),
    BadInput("max_epochs_zero", "train.py", ["trainer.max_epochs=0"], "trainer.max_epochs"),
    BadInput("unlimited_epochs_with_cosine", "train.py", ["trainer.max_epochs=-1"], "trainer.max_epochs",
             ("cosine", "finite")),
    BadInput("too_many_devices", "train.py", ["trainer.devices=4096"], "trainer.devices", ("at most",)),
    BadInput("missing_key", "train.py", ["~data.levels"], "data.levels", ("required",)),
    BadInput("unknown_nonfinite_mode", "train.py", ["nonfinite_loss=ignore"], "nonfinite_loss", ("skip",)),
    BadInput("unwritable_output", "train.py", _output_under_a_file, "hydra.run.dir", ("not a folder",)),
    BadInput("unknown_test_perturbation", "train.py", ["test_perturbations={fog:{haze:{p:1.0}}}"],
             "test_perturbations.fog.haze", ("noise", "shift")),
    # train: files
    BadInput(
        "missing_checkpoint",
        "train.py",
        lambda t: [f"ckpt_path={t / 'gone.ckpt'}"],
        lambda t: str(t / "gone.ckpt"),
        ("no such",),
    ),
    BadInput("corrupt_checkpoint", "train.py", _corrupt_checkpoint, lambda t: str(t / "corrupt.ckpt")),
    BadInput(
        "other_architecture_checkpoint",
        "train.py",
        _other_architecture_checkpoint,
        lambda t: str(t / "wide.ckpt"),
        ("width",),
    ),
    # train: data and training
    BadInput(
        "duplicate_subject_ids",
        "train.py",
        ["~data.subjects", f"+data.subjects=[{_phantom('a', 1, 'train')},{_phantom('a', 2, 'val')}]"],
        "data.subjects",
        ("duplicate", "a"),
    ),
    BadInput(
        "nan_loss",
        "train.py",
        ["optimizer.lr=1e6", "trainer.max_epochs=3"],
        "non-finite",
        ("global step", "phantom-000-"),
    ),
]

OUTPUTS_THAT_LOOK_COMPLETE = ("metrics.json", "*.ckpt")


def _resolve(value, tmp: Path):
    return value(tmp) if callable(value) else value


def _run(case: BadInput, tmp: Path, env: dict | None = None):
    run_dir = tmp / "run"
    args = [*TINY_TRAIN, f"hydra.run.dir={run_dir}", *_resolve(case.args, tmp)]
    return run_cli([case.entry, *args], cwd=ROOT, timeout=300, env={**case.env, **(env or {})}), run_dir


@pytest.mark.parametrize("case", CATALOGUE, ids=[c.id for c in CATALOGUE])
def test_bad_input_fails_with_one_clear_line(case: BadInput, tmp_path: Path):
    result, run_dir = _run(case, tmp_path)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0
    assert lines, "nothing on stderr"
    last = lines[-1]
    assert last.startswith("error: ") and _resolve(case.names, tmp_path) in last, last
    for word in case.also:
        assert word in last, last
    assert "Traceback" not in result.stderr + result.stdout
    for pattern in OUTPUTS_THAT_LOOK_COMPLETE:
        assert not list(tmp_path.rglob(pattern)) or pattern == "*.ckpt" and case.id.endswith("checkpoint"), (
            f"half-written output: {list(tmp_path.rglob(pattern))}"
        )
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith((".tmp", ".partial"))]


def test_debug_flag_shows_the_traceback(tmp_path: Path):
    case = next(c for c in CATALOGUE if c.id == "edge_weight_zero")
    result, _ = _run(case, tmp_path, env={"SPINE_LIGHTNING_DEBUG": "1"})
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "loss.edge_weight" in result.stderr
