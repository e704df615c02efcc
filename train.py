"""Train a single-vertebra segmentation model: `python train.py [+experiment=edge_adv] [key=value ...]`."""

import sys
from pathlib import Path

import hydra

from spine_lightning.core.cli import check_group_choices, run_task
from spine_lightning.training.resume import register_resolvers

CONF = str(Path(__file__).resolve().parent / "conf")


@hydra.main(version_base="1.3", config_path=CONF, config_name="train")
def main(cfg):
    from spine_lightning.training.config_checks import validate_train_config

    run_task(validate_train_config, cfg)  # fail in a second, before Lightning is even imported
    from spine_lightning.training.run import train

    return run_task(train, cfg)


if __name__ == "__main__":
    check_group_choices(sys.argv[1:], CONF)
    register_resolvers()
    main()
