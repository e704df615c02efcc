"""Network blocks and the GCN-residual FCN (plain PyTorch, no Lightning, no files).

May import core only.
"""

from spine_lightning.models.gcn_residual_fcn import GCNResidualFCN

__all__ = ["GCNResidualFCN"]
