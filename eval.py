"""Score a checkpoint on a data set: `python eval.py [ckpt_path=...] [data=phantom] [split=test]`."""

from spine_lightning.core.cli import run_entry

if __name__ == "__main__":
    run_entry("eval")
