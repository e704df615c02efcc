import pytest
import torch

from spine_lightning.models import GCNResidualFCN
from spine_lightning.training.losses import adversarial_perturbation, segmentation_loss, weighted_cross_entropy
from spine_lightning.training.module import SpineSegmentationModule

NET = dict(_target_="spine_lightning.models.GCNResidualFCN", width=2, levels=3, convs=1, kernel=3, gcn_kernel=3)


def _batch(seed=0, n=2, size=(16, 16, 16)):
    g = torch.Generator().manual_seed(seed)
    target = torch.zeros(n, *size, dtype=torch.long)
    target[:, 4:12, 5:11, 3:13] = 1
    image = (target.float() + 0.3 * torch.randn(n, *size, generator=g))[:, None]
    weights = torch.where(target.bool(), 1.1, 1.0)
    return dict(image=image, target=target, weights=weights, level=["L2"] * n, subject=["s"] * n)


def test_weighted_cross_entropy_weights_each_voxel():
    logits = torch.randn(1, 2, 3, 3, 3)
    target = torch.randint(0, 2, (1, 3, 3, 3))
    weights = torch.ones(1, 3, 3, 3)
    weights[0, 1, 1, 1] = 1.1
    ce = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    expected = (ce.sum() + 0.1 * ce[0, 1, 1, 1]) / 27
    assert torch.allclose(weighted_cross_entropy(logits, target, weights), expected)


@pytest.mark.parametrize("kind", ["sign", "l2"])
def test_perturbation_has_the_requested_size_and_raises_the_loss(kind):
    torch.manual_seed(0)
    net = GCNResidualFCN(width=2, levels=3, convs=1, kernel=3, gcn_kernel=3)
    batch = _batch()
    x = batch["image"].clone().requires_grad_(True)
    loss = weighted_cross_entropy(net(x), batch["target"], batch["weights"])
    loss.backward()
    eps = 0.05 if kind == "sign" else 2.0
    r = adversarial_perturbation(x.grad, eps, kind)
    assert not r.requires_grad
    if kind == "sign":
        assert torch.allclose(r.abs().amax(), torch.tensor(eps))
        assert torch.all((r.abs() == eps) | (x.grad == 0))
    else:
        assert torch.allclose(r.flatten(1).norm(dim=1), torch.full((2,), eps), atol=1e-5)
    with torch.no_grad():
        perturbed = weighted_cross_entropy(net(batch["image"] + r), batch["target"], batch["weights"])
        random_dir = weighted_cross_entropy(
            net(batch["image"] + r[torch.randperm(2)].roll(3, -1)), batch["target"], batch["weights"]
        )
    assert perturbed > loss.detach()
    assert perturbed > random_dir


def test_negative_epsilon_is_rejected():
    with pytest.raises(ValueError, match="epsilon"):
        adversarial_perturbation(torch.ones(1, 1, 2, 2, 2), -0.1)


class _NoStepOptimizer(torch.optim.SGD):
    def step(self, closure=None):  # keep the weights so the test can recompute the losses
        return None


def test_adversarial_step_is_two_forwards_two_backwards_and_gradient_of_lst_plus_lat():
    torch.manual_seed(0)
    module = SpineSegmentationModule(net=NET, levels=["L2"], epsilon=0.05, lam=1.0)
    batch = _batch()
    forwards, backwards = [], []
    module.net.register_forward_hook(lambda *a: forwards.append(1))
    module.net.register_full_backward_hook(lambda *a: backwards.append(1))

    opt = _NoStepOptimizer(module.parameters(), lr=0.0)
    module.optimizers = lambda: opt
    module.manual_backward = lambda loss: loss.backward()
    module.log = lambda *a, **k: None
    loss = module.training_step(batch, 0)
    assert len(forwards) == 2 and len(backwards) == 2
    grads = [p.grad.clone() for p in module.parameters()]

    # Recompute L_st, r and L_at from scratch and differentiate their sum in one go.
    module.zero_grad()
    x = batch["image"].clone().requires_grad_(True)
    l_st = weighted_cross_entropy(module.net(x), batch["target"], batch["weights"])
    (g,) = torch.autograd.grad(l_st, x, retain_graph=True)
    r = adversarial_perturbation(g, 0.05, "sign")
    l_at = weighted_cross_entropy(module.net(batch["image"] + r), batch["target"], batch["weights"])
    total = segmentation_loss(l_st, l_at, 1.0)
    assert torch.allclose(total, l_st + l_at)
    assert torch.allclose(loss, total.detach(), atol=1e-6)
    expected = torch.autograd.grad(total, list(module.parameters()))
    for got, want in zip(grads, expected):
        assert torch.allclose(got, want, atol=1e-6)


def test_a_few_optimiser_steps_lower_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    net = GCNResidualFCN(width=4, levels=3, convs=1, kernel=3, gcn_kernel=3, norm="instance")
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    batch = _batch()
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = weighted_cross_entropy(net(batch["image"]), batch["target"], batch["weights"])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
