"""spine_lightning: single lumbar vertebra segmentation in CT (Lightning + Hydra)."""

__version__ = "0.1.0"
