"""Fill the on-disk crop cache in parallel: `python preprocess.py data=verse data.root=DIR`."""

from spine_lightning.core.cli import run_entry

if __name__ == "__main__":
    run_entry("preprocess")
