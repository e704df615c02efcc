"""Speed switches from the config: channels-last-3d memory format and `torch.compile`.

Channels-last runs on CPU and GPU (oneDNN's and cuDNN's 3-D convolutions are both faster in that
layout); `torch.compile` is GPU-only and ignored on a CPU run with a warning. bf16 mixed precision
is Lightning's own `trainer.precision=bf16-mixed`.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from spine_lightning.models.memory_format import use_channels_last

log = logging.getLogger(__name__)


def runs_on_gpu(accelerator: str | None) -> bool:
    return accelerator in ("gpu", "cuda") or (accelerator in ("auto", None) and torch.cuda.is_available())


def apply_speed_options(net: nn.Module, *, channels_last: bool, compile: bool,
                        accelerator: str | None) -> list[str]:
    """Apply the switches that are on, in place; returns the names of those applied."""
    applied = []
    if channels_last:
        use_channels_last(net)
        applied.append("channels_last")
    if compile and not runs_on_gpu(accelerator):
        # on CPU, inductor's compile of the 3-D network is not measured to pay for itself
        log.warning("compile=true ignored: a GPU-only speed switch, this run uses trainer.accelerator=%s",
                    accelerator)
    elif compile:
        net.compile()  # in place: parameter names (and so checkpoints) stay those of the plain module
        applied.append("compile")
    return applied
