"""Score a checkpoint on a data set: `python eval.py ckpt_path=... [data=phantom] [split=test]`."""

import sys
from pathlib import Path

import hydra

from spine_lightning.core.cli import check_group_choices, run_task

CONF = str(Path(__file__).resolve().parent / "conf")


@hydra.main(version_base="1.3", config_path=CONF, config_name="eval")
def main(cfg):
    from spine_lightning.evaluation.score import evaluate

    run_task(evaluate, cfg)


if __name__ == "__main__":
    check_group_choices(sys.argv[1:], CONF)
    main()
