"""Building blocks of the GCN-residual FCN, each named after what it is."""

from __future__ import annotations

import torch
from torch import nn

NORMS = ("none", "batch", "instance")


def norm_layer(kind: str, ch: int) -> nn.Module:
    """Optional normalisation after a convolution ('none' is the paper's plain conv + PReLU)."""
    if kind == "batch":
        return nn.BatchNorm3d(ch)
    if kind == "instance":
        return nn.InstanceNorm3d(ch, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


class ConvPReLU(nn.Sequential):
    """k×k×k convolution ('same' padding), optional normalisation, PReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, norm: str = "none"):
        super().__init__(
            nn.Conv3d(in_ch, out_ch, kernel, padding=kernel // 2), norm_layer(norm, out_ch), nn.PReLU(out_ch)
        )


class GCNBlock(nn.Module):
    """Global Convolutional Network block in 3D: a large separable kernel ("Large Kernel Matters", 2017).

    Two branches of 1D convolutions, k×1×1 → 1×k×1 → 1×1×k and the reverse order, summed. This
    gives a k×k×k receptive field for a cost linear in k.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int):
        super().__init__()
        k, p = kernel, kernel // 2
        shapes = [((k, 1, 1), (p, 0, 0)), ((1, k, 1), (0, p, 0)), ((1, 1, k), (0, 0, p))]

        def branch(order):
            layers, ch = [], in_ch
            for i in order:
                layers.append(nn.Conv3d(ch, out_ch, shapes[i][0], padding=shapes[i][1]))
                ch = out_ch
            return nn.Sequential(*layers)

        self.branch_a = branch([0, 1, 2])
        self.branch_b = branch([2, 1, 0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.branch_a(x) + self.branch_b(x)


class GCNPReLU(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int, kernel: int, norm: str = "none"):
        super().__init__(GCNBlock(in_ch, out_ch, kernel), norm_layer(norm, out_ch), nn.PReLU(out_ch))


class DownConv(nn.Sequential):
    """Stride-2 2×2×2 convolution that doubles the channels (replaces pooling)."""

    def __init__(self, in_ch: int, norm: str = "none"):
        super().__init__(nn.Conv3d(in_ch, 2 * in_ch, 2, stride=2), norm_layer(norm, 2 * in_ch), nn.PReLU(2 * in_ch))


class UpConv(nn.Sequential):
    """Stride-2 2×2×2 transposed convolution that halves the channels."""

    def __init__(self, in_ch: int, norm: str = "none"):
        super().__init__(
            nn.ConvTranspose3d(in_ch, in_ch // 2, 2, stride=2), norm_layer(norm, in_ch // 2), nn.PReLU(in_ch // 2)
        )
