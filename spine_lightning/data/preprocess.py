"""The preprocessing task behind `preprocess.py`: compute every missing crop into the cache."""

from __future__ import annotations

import logging
import time

import hydra
from omegaconf import DictConfig

from spine_lightning.core.errors import ConfigError
from spine_lightning.data.labels import check_levels

log = logging.getLogger(__name__)


def preprocess(cfg: DictConfig) -> int:
    check_levels(cfg.data.levels)
    if not cfg.data.get("cache_dir"):
        raise ConfigError("data.cache_dir", cfg.data.get("cache_dir"), "a folder for the crop cache")
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.check_subjects()
    start = time.perf_counter()
    written = datamodule.fill_cache(progress=True)
    datamodule.setup()  # reads the entries back: absent levels warn (or fail with data.strict=true)
    total = len(datamodule.subjects) * len(datamodule.levels)
    log.info("%d subjects x %d levels: %d cache entries written, %d reused, in %.1f s; cache: %s",
             len(datamodule.subjects), len(datamodule.levels), written, total - written,
             time.perf_counter() - start, datamodule.cache_dir)
    return written
