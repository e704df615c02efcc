"""Shared behaviour of the entry points: group-choice checks and one-line errors."""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path

from . import resolvers  # noqa: F401  (config resolvers must exist before Hydra resolves anything)
from .errors import SpineError

log = logging.getLogger("spine_lightning")
DEBUG_ENV = "SPINE_LIGHTNING_DEBUG"


def fail(message: str, code: int = 1) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def check_group_choices(argv: list[str], conf_dir: str | Path) -> None:
    """Reject `group=name` overrides whose config file does not exist, listing the allowed names.

    Hydra would say so too, but only after a multi-line report; this check gives one line.
    """
    conf_dir = Path(conf_dir)
    for arg in argv:
        m = re.fullmatch(r"\+{0,2}([A-Za-z_][\w/]*)=(.*)", arg)
        if not m or not (conf_dir / m.group(1)).is_dir() or m.group(1).startswith("hydra/"):
            continue  # hydra/launcher, hydra/sweeper, ...: plugins bring choices of their own
        group, value = m.groups()
        if not value or value == "null" or "(" in value:  # sweep functions are Hydra's to parse
            continue
        allowed = sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))
        for name in value.split(","):
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
