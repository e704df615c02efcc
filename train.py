"""Train a single-vertebra segmentation model: `python train.py [+experiment=edge_adv] [key=value ...]`."""

from spine_lightning.core.cli import run_entry

if __name__ == "__main__":
    run_entry("train")
