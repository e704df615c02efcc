"""Network blocks and the GCN-residual FCN (plain PyTorch, no Lightning)."""

from .gcn_residual_fcn import GCNResidualFCN

__all__ = ["GCNResidualFCN"]
