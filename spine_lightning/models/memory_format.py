"""The channels-last-3d memory layout of a network, for training (`channels_last=true`) and inference."""

from __future__ import annotations

import torch
from torch import nn


def _channels_last_input(module: nn.Module, args: tuple):
    x, *rest = args
    return (x.contiguous(memory_format=torch.channels_last_3d), *rest)


def use_channels_last(net: nn.Module) -> nn.Module:
    """Store 5-D weights and feed inputs as channels-last-3d (NDHWC), which cuDNN runs faster with
    tensor cores, and oneDNN runs faster on CPU (2.5-2.8x a training step on a 2-core AVX-512 machine,
    `benchmarks/results/cpu_steps.md`). The state dict keeps its keys and shapes, so checkpoints stay
    interchangeable."""
    net.to(memory_format=torch.channels_last_3d)
    net.register_forward_pre_hook(_channels_last_input)
    return net
