"""DDP inside a Hydra multirun: start the other ranks as single runs of the current job.

Lightning starts ranks 1..N-1 of `strategy=ddp` by re-running the script with `sys.argv`. Inside
a multirun that command still holds `-m` and the sweep lists, so each child would start a whole
new sweep (Lightning issue #11300, Hydra issue #2070). Here a child instead gets this job's own
overrides (the sweep values already chosen), `hydra.mode=RUN` and the job's output folder.
"""

from __future__ import annotations

import os
import sys

import torch

import __main__

# Set by Lightning's launcher in the rank-0 process; left in place they would make the next job of
# the multirun believe its ranks are started externally, and it would wait for them forever.
LAUNCHER_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
_saved_env: dict[str, str | None] | None = None


def job_subprocess_cmd(local_rank: int) -> tuple[list[str], str]:
    """Command and working directory that run the current Hydra job once more, as rank `local_rank`."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd, to_absolute_path

    hydra_cfg = HydraConfig.get()
    if __main__.__spec__ is None:
        command = [sys.executable, to_absolute_path(sys.argv[0])]
    else:
        command = [sys.executable, "-m", __main__.__spec__.name]
    command += list(hydra_cfg.overrides.task)  # as the sweeper composed this job: no lists left
    command += ["hydra.mode=RUN", f'hydra.run.dir="{hydra_cfg.runtime.output_dir}"',
                f"hydra.job.name=train_ddp_process_{local_rank}", "hydra.output_subdir=null"]
    return command, get_original_cwd()


def start_ranks_as_job_runs() -> bool:
    """In a Hydra multirun, make Lightning start the other DDP ranks with `job_subprocess_cmd`.
    Returns whether the launcher was changed (single runs keep Lightning's own command)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from lightning.pytorch.strategies.launchers import subprocess_script

    global _saved_env
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return False
    subprocess_script._hydra_subprocess_cmd = job_subprocess_cmd
    _saved_env = {k: os.environ.get(k) for k in LAUNCHER_ENV}
    return True


def end_ddp_job() -> None:
    """After a job: drop its process group and, in a multirun, the launcher's environment, so that
    the next job starts its own ranks."""
    global _saved_env
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    if _saved_env is not None:
        for key, value in _saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _saved_env = None
