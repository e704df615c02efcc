"""`data=mix`: several sources in one run, each with its own split and sampling weight, and test
metrics per source as well as overall."""

import json
import math
from collections import Counter

import hydra
import pytest
import torch
from conftest import ROOT, TINY_MODEL, run_cli
from hydra import compose, initialize_config_dir

from spine_lightning.core.errors import ConfigError
from spine_lightning.data.datamodule import SpineDataModule
from spine_lightning.data.mix import mixed_subjects
from spine_lightning.data.sources import phantom_subjects

TINY_PHANTOMS = [f"data.subjects.phantom.subjects.num_{s}=1" for s in ("train", "val", "test")] + [
    "data.subjects.synthetic.subjects.num_per_map=1"]


def _mix_config(*overrides):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=["data=mix", *overrides])


def test_each_source_keeps_its_own_split_and_ids_are_unique_across_sources():
    cfg = _mix_config()
    subjects = hydra.utils.instantiate(cfg.data.subjects)
    by_source = {}
    for s in subjects:
        by_source.setdefault(s.source, []).append(s)
    assert set(by_source) == {name for name, spec in cfg.data.subjects.items()
                              if not name.startswith("_") and spec is not None}
    real = cfg.data.subjects.real.subjects.split
    assert {s.id: s.split for s in by_source["real"]} == {f"real-{k}": v for k, v in real.items()}
    phantom = cfg.data.subjects.phantom.subjects
    assert Counter(s.split for s in by_source["phantom"]) == {
        "train": phantom.num_train, "val": phantom.num_val, "test": phantom.num_test}
    ids = [s.id for s in subjects]
    assert len(ids) == len(set(ids)) and all(s.id.startswith(f"{s.source}-") for s in subjects)


def test_the_same_subjects_in_two_sources_get_distinct_ids():
    one = dict(weight=1.0, subjects=phantom_subjects(1, 1, 1))
    mixed = mixed_subjects(a=one, b=one, empty=None)
    assert len({s.id for s in mixed}) == 6 and {s.source for s in mixed} == {"a", "b"}
    with pytest.raises(ConfigError, match="weight"):
        mixed_subjects(a=dict(weight=-1, subjects=phantom_subjects(1, 1, 1)))


@pytest.mark.parametrize("weights,counts", [((3.0, 1.0), (5, 40)), ((1.0, 1.0), (2, 30))])
def test_training_draws_sources_in_proportion_to_their_weights(weights, counts):
    sources = {name: dict(weight=w, subjects=phantom_subjects(n, 1, 1, seed=i))
               for i, (name, w, n) in enumerate(zip("ab", weights, counts))}
    draws = 20_000
    dm = SpineDataModule(mixed_subjects(**sources), train_samples_per_epoch=draws)
    # crops stand in for preprocessing: one per training subject (the sampler needs only their source)
    dm.crops = {"train": [dict(source=s.source) for s in dm.subjects if s.split == "train"]}
    torch.manual_seed(0)
    drawn = Counter(dm.crops["train"][i]["source"] for i in dm._train_sampler())
    assert sum(drawn.values()) == draws
    p = weights[0] / sum(weights)
    tolerance = 4 * math.sqrt(p * (1 - p) / draws)  # four binomial standard deviations
    assert abs(drawn["a"] / draws - p) < tolerance, (drawn, p)


def test_a_mixed_run_logs_test_metrics_per_source_and_overall(tmp_path):
    args = ["train.py", "data=mix", *TINY_PHANTOMS, *TINY_MODEL, "logger=csv",
            f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = run_cli(args, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    splits = json.loads((tmp_path / "run" / "splits.json").read_text())
    sources = {s.split("-")[0] for part in splits.values() for s in part}
    assert sources == {"phantom", "real", "synthetic"}
    assert not any(s.startswith("synthetic") for s in splits["test"])  # synthetic images train only
    for source in ("phantom", "real"):
        assert 0.0 <= metrics[f"test/{source}/iou_mean"] <= 1.0
    # real test subject (tptbox) has L2-L4, the phantom all levels: each level's overall IoU is the
    # mean over the crops of both sources, one crop each
    for level in ("L2", "L3", "L4"):
        per_source = [metrics[f"test/{s}/iou_{level}"] for s in ("phantom", "real")]
        assert metrics[f"test/iou_{level}"] == pytest.approx(sum(per_source) / 2, abs=1e-5)
    assert "test/real/iou_L5" not in metrics and "test/phantom/iou_L5" in metrics
