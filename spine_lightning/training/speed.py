"""GPU speed switches from the config: channels-last-3d memory format and `torch.compile`.

Both help only on a GPU; on a CPU run they are ignored with a warning (bf16 mixed precision is
Lightning's own `trainer.precision=bf16-mixed`).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)


def runs_on_gpu(accelerator: str | None) -> bool:
    return accelerator in ("gpu", "cuda") or (accelerator in ("auto", None) and torch.cuda.is_available())


def _channels_last_input(module: nn.Module, args: tuple):
    x, *rest = args
    return (x.contiguous(memory_format=torch.channels_last_3d), *rest)


def use_channels_last(net: nn.Module) -> nn.Module:
    """Store 5-D weights and feed inputs as channels-last-3d (NDHWC), which cuDNN runs faster with
    tensor cores. The state dict keeps its keys and shapes, so checkpoints stay interchangeable."""
    net.to(memory_format=torch.channels_last_3d)
    net.register_forward_pre_hook(_channels_last_input)
    return net


def apply_speed_options(net: nn.Module, *, channels_last: bool, compile: bool,
                        accelerator: str | None) -> list[str]:
    """Apply the switches that are on, in place; returns the names of those applied."""
    wanted = [name for name, on in (("channels_last", channels_last), ("compile", compile)) if on]
    if wanted and not runs_on_gpu(accelerator):
        log.warning("%s ignored: GPU-only speed switch(es), this run uses trainer.accelerator=%s",
                    " and ".join(f"{w}=true" for w in wanted), accelerator)
        return []
    if channels_last:
        use_channels_last(net)
    if compile:
        net.compile()  # in place: parameter names (and so checkpoints) stay those of the plain module
    return wanted
