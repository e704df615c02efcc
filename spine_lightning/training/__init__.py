"""Training: the LightningModule (wiring only), losses, callbacks, resume, checkpoint writing and
DDP glue; `run.train` is the task behind `train.py`.

May import core, data, models, inference (checkpoint reading) and evaluation (metrics): it is the
last stage in the import order core ← data ← models ← inference ← evaluation ← training.
"""
