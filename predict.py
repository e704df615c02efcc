"""Segment lumbar vertebrae in a CT: `python predict.py ckpt_path=... input=... output_dir=...`."""

import sys
from pathlib import Path

import hydra

from spine_lightning.core.cli import check_group_choices, run_task

CONF = str(Path(__file__).resolve().parent / "conf")


@hydra.main(version_base="1.3", config_path=CONF, config_name="predict")
def main(cfg):
    from spine_lightning.inference.predict import predict

    run_task(predict, cfg)


if __name__ == "__main__":
    check_group_choices(sys.argv[1:], CONF)
    main()
