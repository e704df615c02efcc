"""Evaluation: metrics (torchmetrics overlap, SimpleITK surface distances), scoring a checkpoint
against reference label maps (`score.evaluate`, behind `eval.py`), overlay pictures and the
ablation report (`python -m spine_lightning.report`).

May import core, data, models and inference; never training.
"""
