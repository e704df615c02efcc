"""End-to-end: `train.py` as a user runs it, on tiny phantoms."""

import json

import pytest
from conftest import TINY_TRAIN, run_cli
from wandb_offline import find_run_files, summarize_run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from conftest import ROOT

    out = tmp_path_factory.mktemp("run")
    proc = run_cli(["train.py", "+experiment=edge_adv", *TINY_TRAIN, f"hydra.run.dir={out}"], cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_run_directory_has_metrics_splits_and_checkpoints(tiny_run):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    for level in ("L2", "L3", "L4", "L5"):
        assert 0.0 <= metrics[f"test/iou_{level}"] <= 1.0
        assert 0.0 <= metrics[f"test/dice_{level}"] <= 1.0
    assert metrics["test/iou_mean"] == pytest.approx(sum(metrics[f"test/iou_L{i}"] for i in range(2, 6)) / 4)
    splits = json.loads((tiny_run / "splits.json").read_text())
    assert all(len(splits[s]) == 1 for s in ("train", "val", "test"))
    assert not set(splits["train"]) & set(splits["test"])  # split by subject
    assert (tiny_run / "checkpoints" / "last.ckpt").is_file()
    assert len(list((tiny_run / "checkpoints").glob("epoch_*.ckpt"))) == 1


def test_wandb_offline_run_holds_per_level_iou_and_the_method(tiny_run):
    (run_file,) = find_run_files(tiny_run)
    run = summarize_run(run_file)
    logged = {k for row in run["history"] for k in row}
    assert {"val/iou_L2", "val/iou_L5", "val/iou_mean", "test/iou_L3", "test/iou_mean"} <= logged
    assert run["config"]["loss"]["adversarial"]["epsilon"] > 0  # the edge_adv experiment's config
    assert "edge_adv" in run["tags"]


def test_training_with_lightnings_weight_averaging_validates_per_level(tmp_path):
    """Lightning's WeightAveraging swaps every buffer of the module with its average's before the
    module's validation hook runs: the per-level metrics must not live in a buffer, or they empty."""
    from conftest import ROOT

    ema = ["+callbacks.ema._target_=lightning.pytorch.callbacks.WeightAveraging", "+callbacks.ema.use_buffers=false",
           "+callbacks.ema.multi_avg_fn._target_=torch.optim.swa_utils.get_ema_multi_avg_fn",
           "+callbacks.ema.multi_avg_fn.decay=0.9", "trainer.max_epochs=2"]
    proc = run_cli(["train.py", *TINY_TRAIN, *ema, "logger=csv", f"hydra.run.dir={tmp_path}"], cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (log,) = tmp_path.rglob("metrics.csv")
    logged = [line.split(",") for line in log.read_text().splitlines()]
    column = logged[0].index("val/iou_mean")
    assert sum(1 for row in logged[1:] if row[column]) == 2  # validated after each of the two epochs


@pytest.mark.parametrize(
    "args,key,allowed",
    [
        (["+experiment=edge_adversarial"], "experiment=edge_adversarial", "adv, baseline, edge, edge_adv"),
        (["data.crop_size=[96,112,60]"], "data.crop_size", "multiple of 16"),
        (["loss.adversarial.epsilon=-0.1"], "loss.adversarial.epsilon", ">= 0"),
        (["model=huge"], "model=huge", "cpu, paper"),
    ],
)
def test_bad_settings_fail_in_one_line_before_training(args, key, allowed, tmp_path):
    from conftest import ROOT

    proc = run_cli(["train.py", *args, f"hydra.run.dir={tmp_path}/run"], cwd=ROOT, timeout=120)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert key in lines[-1] and allowed in lines[-1]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()
