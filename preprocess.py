"""Fill the on-disk crop cache in parallel: `python preprocess.py data=verse data.root=DIR`."""

import sys
from pathlib import Path

import hydra

from spine_lightning.core.cli import check_group_choices, run_task

CONF = str(Path(__file__).resolve().parent / "conf")


@hydra.main(version_base="1.3", config_path=CONF, config_name="preprocess")
def main(cfg):
    from spine_lightning.data.preprocess import preprocess

    return run_task(preprocess, cfg)


if __name__ == "__main__":
    check_group_choices(sys.argv[1:], CONF)
    main()
