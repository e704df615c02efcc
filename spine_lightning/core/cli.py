"""Shared behaviour of the entry points: group-choice checks and one-line errors."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, Override
from hydra.errors import HydraException, OverrideParseException

from spine_lightning.core import resolvers  # noqa: F401
from spine_lightning.core.errors import SpineError

log = logging.getLogger("spine_lightning")
DEBUG_ENV = "SPINE_LIGHTNING_DEBUG"
# The stage functions behind the entry points, named as Hydra names targets: core imports no stage.
TASKS = {
    "train": ("spine_lightning.training.config_checks:validate_train_config", "spine_lightning.training.run:train"),
    "predict": (None, "spine_lightning.inference.predict:predict"),
    "eval": (None, "spine_lightning.evaluation.score:evaluate"),
    "preprocess": (None, "spine_lightning.data.preprocess:preprocess"),
}


def conf_dir() -> Path:
    """The Hydra configs: `conf/` of a checkout, or the copy a wheel installs as `spine_lightning/conf`."""
    package = Path(__file__).resolve().parent.parent
    installed = package / "conf"
    return installed if installed.is_dir() else package.parent / "conf"


def _function(name: str):
    module, attr = name.split(":")
    return getattr(importlib.import_module(module), attr)


def run_entry(config_name: str):
    """An entry point: `python train.py ...` and the console script `spine-train ...` both land here.
    Checks group choices in one line, composes `conf/<config_name>.yaml` with the command line's
    overrides, runs the config checks (before heavy imports) and then the task."""
    checks, task = TASKS[config_name]
    conf = str(conf_dir())
    check_group_choices(sys.argv[1:], conf)

    @hydra.main(version_base="1.3", config_path=conf, config_name=config_name)
    def main(cfg):
        if checks:
            run_task(_function(checks), cfg)
        return run_task(_function(task), cfg)

    return main()


def train_main():
    return run_entry("train")


def predict_main():
    return run_entry("predict")


def eval_main():
    return run_entry("eval")


def preprocess_main():
    return run_entry("preprocess")


def fail(message: str, code: int = 1) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def parse_override(arg: str) -> Override | None:
    """One command-line override as Hydra parses it, or None for a flag or what Hydra would refuse
    (Hydra then says why itself)."""
    if arg.startswith("-"):
        return None
    try:
        return OverridesParser.create().parse_override(arg)
    except (OverrideParseException, HydraException):
        return None


def check_group_choices(argv: list[str], conf_dir: str | Path) -> None:
    """Reject `group=name` overrides whose config file does not exist, listing the allowed names.

    Hydra would say so too, but only after a multi-line report; this check gives one line.
    """
    conf_dir = Path(conf_dir)
    for arg in argv:
        override = parse_override(arg)
        if override is None or override.is_delete():
            continue
        group = override.key_or_group
        if not (conf_dir / group).is_dir() or group.startswith("hydra/"):
            continue  # hydra/launcher, hydra/sweeper, ...: plugins bring choices of their own
        value = override.value()
        if isinstance(value, ChoiceSweep):
            names = [str(v) for v in value.list]
        elif isinstance(value, str) and value:
            names = [value]
        else:  # null, ranges, globs, interval sweeps: Hydra's to interpret
            continue
        allowed = sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))
        for name in names:
            if name not in allowed:
                fail(f"{group}={name}: no such {group}; allowed: {', '.join(allowed)}", 2)


def run_task(task, cfg):
    """Run a task; a SpineError becomes one line on stderr and a non-zero exit (no traceback
    unless the environment variable SPINE_LIGHTNING_DEBUG=1)."""
    try:
        return task(cfg)
    except Exception as exc:
        err = spine_error_in(exc)
        if err is None or os.environ.get(DEBUG_ENV) == "1":
            raise
        logging.shutdown()
        fail(str(err), err.exit_code)


def spine_error_in(exc: BaseException) -> SpineError | None:
    """The SpineError behind `exc`, also when Hydra's instantiate wrapped it (raised from it)."""
    while exc is not None and not isinstance(exc, SpineError):
        exc = exc.__cause__
    return exc
