"""Segment lumbar vertebrae in a CT: `python predict.py input=... output_dir=... [ckpt_path=...]`."""

from spine_lightning.core.cli import run_entry

if __name__ == "__main__":
    run_entry("predict")
