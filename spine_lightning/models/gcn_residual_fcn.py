"""The GCN-residual fully convolutional network for single-vertebra segmentation.

Encoder–decoder with `levels` resolution levels. Encoder level: `convs` k×k×k convolutions + PReLU
with a residual connection (level input + level output, as in V-Net), then a stride-2 convolution that
doubles the channels. Decoder level: a transposed convolution that halves the channels, concatenation
with the encoder's skip, `convs` GCN blocks (large separable kernel) + PReLU, and again a residual.
A 1×1×1 convolution gives class logits; `predict_proba` applies the softmax. `norm` optionally
inserts batch or instance normalisation after each convolution (the paper's network has none).
"""

from __future__ import annotations

import torch
from torch import nn

from spine_lightning.models.blocks import ConvPReLU, DownConv, GCNPReLU, UpConv


class EncoderLevel(nn.Module):
    """`convs` convolutions with a residual connection from the level's input to its output, as
    in V-Net (so a level with one convolution has one too). A one-channel input (the CT) is
    broadcast over the level's channels; any other change of width goes through a 1×1×1 projection."""

    def __init__(self, in_ch: int, ch: int, convs: int, kernel: int, norm: str):
        super().__init__()
        self.convs = nn.Sequential(*[ConvPReLU(in_ch if i == 0 else ch, ch, kernel, norm) for i in range(convs)])
        self.shortcut = nn.Identity() if in_ch in (1, ch) else nn.Conv3d(in_ch, ch, 1)

    def forward(self, x):
        return self.convs(x) + self.shortcut(x)


class DecoderLevel(nn.Module):
    def __init__(self, in_ch: int, convs: int, gcn_kernel: int, norm: str):
        super().__init__()
        ch = in_ch // 2
        self.up = UpConv(in_ch, norm)
        self.blocks = nn.Sequential(
            GCNPReLU(2 * ch, ch, gcn_kernel, norm), *[GCNPReLU(ch, ch, gcn_kernel, norm) for _ in range(convs - 1)]
        )

    def forward(self, x, skip):
        up = self.up(x)
        return up + self.blocks(torch.cat([up, skip], dim=1))


class GCNResidualFCN(nn.Module):
    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        width: int = 16,
        levels: int = 5,
        convs: int | list[int] = 2,
        kernel: int = 5,
        gcn_kernel: int = 13,
        norm: str = "none",
    ):
        super().__init__()
        convs = [convs] * levels if isinstance(convs, int) else list(convs)
        if len(convs) != levels or min(convs) < 1:
            raise ValueError(f"convs must be one positive int or {levels} of them, got {convs}")
        self.levels = levels
        chans = [width * 2**i for i in range(levels)]
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        for i, ch in enumerate(chans):
            # Level 0 maps the input to `width` channels; deeper levels get theirs from DownConv.
            self.encoders.append(EncoderLevel(in_channels if i == 0 else ch, ch, convs[i], kernel, norm))
            if i < levels - 1:
                self.downs.append(DownConv(ch, norm))
        self.decoders = nn.ModuleList(
            DecoderLevel(chans[i + 1], convs[i], gcn_kernel, norm) for i in reversed(range(levels - 1))
        )
        self.head = nn.Conv3d(width, num_classes, 1)

    @property
    def divisor(self) -> int:
        """Every spatial size of the input must be a multiple of this."""
        return 2 ** (self.levels - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, encoder in enumerate(self.encoders):
            x = encoder(x)
            if i < self.levels - 1:
                skips.append(x)
                x = self.downs[i](x)
        for decoder, skip in zip(self.decoders, reversed(skips)):
            x = decoder(x, skip)
        return self.head(x)

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self(x), dim=1)
