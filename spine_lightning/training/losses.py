"""Losses of the method, as pure functions.

- `weighted_cross_entropy`: the paper's cross-entropy (eq. 2) with the boundary target value
  (eq. 4) expressed as a per-voxel weight map (1.0, or `edge_weight` on the contour).
- `adversarial_perturbation`: r that maximises the loss to first order (the fast gradient method),
  from the input gradient of L_st: ε·sign(g) or ε·g/‖g‖₂ per sample; detached.
- `segmentation_loss`: L_seg = L_st + λ·L_at.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PERTURBATIONS = ("sign", "l2")


def weighted_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean of w·CE over the valid voxels. logits (N,C,...), target (N,...) int, weights (N,...) or
    None; valid (N,...) 1 inside the scan, 0 past its edge (air filled in, not anatomy), or None: all."""
    ce = F.cross_entropy(logits, target, reduction="none")
    if weights is not None:
        ce = ce * weights
    if valid is None:
        return ce.mean()
    valid = valid.to(ce.dtype)
    return (ce * valid).sum() / valid.sum().clamp_min(1.0)  # a mean over valid voxels, not all


def adversarial_perturbation(input_grad: torch.Tensor, epsilon: float, kind: str = "sign") -> torch.Tensor:
    """The loss-maximising perturbation of size ε (L∞ for 'sign', per-sample L2 for 'l2')."""
    if epsilon < 0:
        raise ValueError(f"epsilon must be >= 0, got {epsilon}")
    g = input_grad.detach()
    if kind == "sign":
        return epsilon * g.sign()
    if kind == "l2":
        norm = g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (g.dim() - 1)))
        return epsilon * g / norm
    raise ValueError(f"perturbation must be one of {PERTURBATIONS}, got {kind!r}")


def segmentation_loss(loss_st: torch.Tensor, loss_at: torch.Tensor | None, lam: float = 1.0) -> torch.Tensor:
    """L_seg = L_st + λ·L_at (just L_st without the adversarial term)."""
    return loss_st if loss_at is None else loss_st + lam * loss_at
