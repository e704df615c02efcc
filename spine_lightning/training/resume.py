"""Resuming a killed run into its own run directory, with the same W&B run id.

`ckpt_path=<run>/checkpoints/last.ckpt` resumes into `<run>`; `auto_resume=true` finds the newest
unfinished run (a `last.ckpt` but no `metrics.json`) started with the same overrides. The choice is
made by the `spine_run_dir` resolver in `hydra.run.dir`, before Hydra creates a fresh directory.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from omegaconf import OmegaConf

from spine_lightning.core.cli import parse_override
from spine_lightning.core.io import atomic_path

log = logging.getLogger(__name__)

LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"
WANDB_ID_FILE = "wandb_run_id.txt"
# overrides that say how to start, not what to train: they may differ between a run and its resumption
_START_KEYS = ("ckpt_path", "auto_resume", "hydra.", "paths.")


def run_dir_of_checkpoint(ckpt_path: str | Path) -> Path | None:
    """The run directory holding `<run>/checkpoints/<name>.ckpt`, or None for a checkpoint elsewhere."""
    path = Path(ckpt_path).absolute()
    run = path.parent.parent
    if path.parent.name == "checkpoints" and (run / ".hydra").is_dir():
        return run
    return None


def _training_overrides(overrides) -> list[str]:
    keep = []
    for item in overrides or []:
        override = parse_override(str(item))
        key = override.key_or_group if override else str(item)
        if not key.startswith(_START_KEYS):
            keep.append(str(item))
    return sorted(keep)


def find_resumable_run(runs_dir: str | Path, overrides) -> Path | None:
    """Newest run under `runs_dir` with a `last.ckpt`, no `metrics.json` and the same training overrides."""
    wanted = _training_overrides(overrides)
    candidates = []
    for run in Path(runs_dir).glob("*"):
        last, saved = run / LAST_CHECKPOINT, run / ".hydra" / "overrides.yaml"
        if not last.is_file() or (run / "metrics.json").exists() or not saved.is_file():
            continue
        if _training_overrides(OmegaConf.load(saved)) == wanted:
            candidates.append((last.stat().st_mtime, run))
    return max(candidates)[1] if candidates else None


def resolve_run_dir(runs_dir: str, fresh_name: str, *, _root_) -> str:
    """`hydra.run.dir`: the resumed run's directory when training resumes, else `runs_dir/fresh_name`.
    Only training resumes: eval or predict given a run's checkpoint get a folder of their own, or
    they would overwrite that run's `.hydra/` and `metrics.json`."""
    if OmegaConf.select(_root_, "task_name") != "train":
        return str(Path(runs_dir) / fresh_name)
    ckpt_path = OmegaConf.select(_root_, "ckpt_path")
    if ckpt_path:
        run = run_dir_of_checkpoint(ckpt_path)
        if run is not None:
            return str(run)
    elif OmegaConf.select(_root_, "auto_resume"):
        run = find_resumable_run(runs_dir, OmegaConf.select(_root_, "hydra.overrides.task"))
        if run is not None:
            return str(run)
    return str(Path(runs_dir) / fresh_name)


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("spine_run_dir"):
        OmegaConf.register_new_resolver("spine_run_dir", resolve_run_dir)


def checkpoint_to_resume(ckpt_path: str | None, auto_resume: bool, out_dir: Path) -> str | None:
    """The checkpoint `trainer.fit` resumes from: the explicit one, else this run's `last.ckpt` under
    `auto_resume`, else None (a fresh start)."""
    if ckpt_path:
        return str(ckpt_path)
    last = out_dir / LAST_CHECKPOINT
    if auto_resume and last.is_file():
        log.info("auto_resume: resuming from %s", last)
        return str(last)
    if auto_resume:
        log.info("auto_resume: no unfinished run with these overrides; starting a fresh run")
    return None


def wandb_run_id(out_dir: Path) -> str:
    """The W&B run id of this run directory, created on first use, so a resumed run logs to the same run."""
    path = out_dir / WANDB_ID_FILE
    if path.is_file():
        return path.read_text().strip()
    run_id = secrets.token_hex(4)  # W&B ids are 8 lowercase alphanumerics
    with atomic_path(path) as tmp:
        tmp.write_text(run_id + "\n")
    return run_id
