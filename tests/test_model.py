import pytest
import torch
import torch.nn.functional as F

from spine_lightning.models import GCNResidualFCN
from spine_lightning.models.blocks import GCNBlock


@pytest.mark.parametrize(
    "size,levels",
    [((64, 112, 96), 5), ((32, 48, 16), 5), ((24, 40, 8), 4), ((16, 16, 16), 3)],
)
def test_output_has_the_input_size_and_two_classes(size, levels):
    net = GCNResidualFCN(width=2, levels=levels, convs=1, kernel=3, gcn_kernel=5)
    with torch.no_grad():
        out = net(torch.randn(1, 1, *size))
    assert out.shape == (1, 2, *size)
    assert net.divisor == 2 ** (levels - 1)


def test_paper_profile_matches_the_description():
    net = GCNResidualFCN(width=16, levels=5, convs=[1, 2, 3, 3, 3], kernel=5, gcn_kernel=13)
    convs = [m for m in net.encoders.modules() if isinstance(m, torch.nn.Conv3d)]
    assert {c.kernel_size for c in convs} == {(5, 5, 5)}
    assert [d[0].out_channels for d in net.downs] == [32, 64, 128, 256]
    assert all(d[0].kernel_size == (2, 2, 2) and d[0].stride == (2, 2, 2) for d in net.downs)
    ups = [dec.up[0] for dec in net.decoders]
    assert [u.out_channels for u in ups] == [128, 64, 32, 16]
    gcn = [m for m in net.decoders.modules() if isinstance(m, GCNBlock)]
    assert gcn and all(b.branch_a[0].kernel_size == (13, 1, 1) for b in gcn)
    probs = net.predict_proba(torch.randn(1, 1, 16, 16, 16))
    assert torch.allclose(probs.sum(dim=1), torch.ones(1, 16, 16, 16))


def test_gcn_block_equals_its_separable_definition():
    torch.manual_seed(0)
    k = 5
    block = GCNBlock(1, 1, k)
    for conv in [*block.branch_a, *block.branch_b]:
        torch.nn.init.normal_(conv.weight)
        torch.nn.init.zeros_(conv.bias)
    x = torch.randn(1, 1, 12, 13, 14)

    # Each branch, without biases, is one k×k×k convolution whose kernel is the outer product of
    # its three 1D kernels; the block sums the two.
    def dense_kernel(branch):
        kz, ky, kx = (c.weight.flatten() for c in sorted(branch, key=lambda c: c.kernel_size, reverse=True))
        return torch.einsum("i,j,k->ijk", kz, ky, kx)[None, None]

    expected = F.conv3d(x, dense_kernel(block.branch_a) + dense_kernel(block.branch_b), padding=k // 2)
    assert torch.allclose(block(x), expected, atol=1e-4)


def test_every_encoder_level_has_a_residual_even_with_one_convolution():
    """V-Net's residual: a level's input is added to its convolutions' output. With the
    convolutions zeroed, a level must pass its input through (before the fix, a one-convolution
    level passed nothing: no residual at all in the default `convs: 1` profile)."""
    import torch

    net = GCNResidualFCN(width=4, levels=3, convs=1, kernel=3, gcn_kernel=5, norm="none")
    for level in net.encoders:
        for conv in level.convs.modules():
            if isinstance(conv, torch.nn.Conv3d):
                torch.nn.init.zeros_(conv.weight)
                torch.nn.init.zeros_(conv.bias)
    x = torch.randn(1, 1, 8, 8, 8)
    out0 = net.encoders[0](x)  # one-channel CT broadcast over the level's 4 channels
    assert torch.allclose(out0, x.expand(1, 4, 8, 8, 8))
    deeper = torch.randn(1, 8, 4, 4, 4)
    assert torch.allclose(net.encoders[1](deeper), deeper)
