"""A small ablation multirun end to end: W&B offline files show the shared group, the experiment
tags, the config, per-level curves, overlay images and the per-case table; the report counts
every run."""

import csv
import json

import pytest
from conftest import ROOT, TINY_TRAIN, run_cli
from wandb_offline import find_run_files, read_records, summarize_run

METHODS = ["baseline", "edge_adv"]
LEVELS = ["L2", "L3", "L4", "L5"]


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    sweep = tmp_path_factory.mktemp("sweeps") / "ablation_test"
    args = ["train.py", "+sweep=ablation", f"+experiment={','.join(METHODS)}", "seed=7", *TINY_TRAIN,
            "callbacks.wandb_overlays.every_n_epochs=1", "callbacks.wandb_best_checkpoint.enabled=true",
            "test_perturbations={shift:{shift:{p:1.0,shift_hu:[300,300]}}}", f"hydra.sweep.dir={sweep}"]
    result = run_cli(args, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return sweep


def runs_by_method(sweep_dir):
    runs = {}
    for path in find_run_files(sweep_dir):
        summary = summarize_run(path)
        runs[summary["tags"][0]] = (path, summary)
    return runs


def test_runs_share_the_sweep_group_and_carry_their_experiment_tag(sweep_dir):
    runs = runs_by_method(sweep_dir)
    assert sorted(runs) == sorted(METHODS)
    for method, (_, summary) in runs.items():
        assert summary["group"] == sweep_dir.name
        assert summary["tags"] == [method]
        assert summary["config"]["experiment_name"] == method  # W&B groups by config values
        edge_weight = summary["config"]["loss"]["edge_weight"]  # the full config is logged
        assert edge_weight == {"baseline": 1.0, "edge_adv": 1.1}[method]


def test_per_level_curves_overlays_and_case_table(sweep_dir):
    for path, summary in runs_by_method(sweep_dir).values():
        keys = set().union(*summary["history"])
        for stage in ("val", "test"):
            assert {f"{stage}/{m}_{lv}" for m in ("iou", "dice") for lv in LEVELS} <= keys
        overlays = [row for row in summary["history"] if row.get("val/overlays/_type") == "images/separated"]
        assert overlays and overlays[0]["val/overlays/count"] >= 1
        images = list(path.parent.glob("files/media/images/val/overlays_*.png"))
        assert len(images) == overlays[0]["val/overlays/count"]
        tables = list(path.parent.glob("files/media/table/test/cases_*.table.json"))
        assert len(tables) == 1
        assert len(list(path.parent.glob("files/media/table/test_shift/cases_*.table.json"))) == 1
        table = json.loads(tables[0].read_text())
        assert table["columns"] == ["subject", "level", "iou", "dice"]
        assert sorted(row[1] for row in table["data"]) == LEVELS  # one test subject, four levels


def test_report_counts_every_run(sweep_dir):
    result = run_cli(["-m", "spine_lightning.evaluation.report", str(sweep_dir)], cwd=ROOT)
    assert result.returncode == 0, result.stderr
    with open(sweep_dir / "ablation.csv", newline="") as f:
        rows = {row["level"]: row for row in csv.DictReader(f)}
    assert [rows["mean"][f"{m}_n"] for m in METHODS] == ["1", "1"]
    for method in METHODS:
        job = next(d for d in sweep_dir.iterdir() if (d / ".hydra").is_dir()
                   and f"+experiment={method}" in (d / ".hydra" / "overrides.yaml").read_text())
        metrics = json.loads((job / "metrics.json").read_text())
        assert float(rows["L3"][f"{method}_mean"]) == pytest.approx(metrics["test/iou_L3"], abs=1e-6)
    assert (sweep_dir / "ablation.png").stat().st_size > 0
    assert "2 found, 2 finished, 0 crashed" in (sweep_dir / "ablation.md").read_text()
    with open(sweep_dir / "runs.csv", newline="") as f:
        runs = list(csv.DictReader(f))
    assert sorted(r["experiment"] for r in runs) == sorted(METHODS)
    assert all(r["command"].startswith("python train.py ") and "+sweep" not in r["command"] for r in runs)


def test_each_test_crop_scored_clean_and_perturbed(sweep_dir):
    """`test_perturbations` tests again on perturbed crops: its own metrics, one case row per crop
    and condition; the perturbation changes what the network sees."""
    for job in (d for d in sweep_dir.iterdir() if (d / "metrics.json").exists()):
        metrics = json.loads((job / "metrics.json").read_text())
        assert {f"test_shift/iou_{lv}" for lv in LEVELS} | {"test_shift/iou_mean"} <= set(metrics)
        with open(job / "test_cases.csv", newline="") as f:
            cases = list(csv.DictReader(f))
        clean = sorted((c["subject"], c["level"]) for c in cases if c["condition"] == "test")
        assert clean == sorted((c["subject"], c["level"]) for c in cases if c["condition"] == "test_shift")
        assert sorted(lv for _, lv in clean) == LEVELS


def test_best_checkpoint_is_a_model_artifact(sweep_dir):
    for path, summary in runs_by_method(sweep_dir).values():
        artifacts = [r.artifact for r in read_records(path) if r.WhichOneof("record_type") == "artifact"]
        models = [a for a in artifacts if a.type == "model"]
        assert len(models) == 1
        assert models[0].name == f"model-{summary['run_id']}" and "best" in models[0].aliases
        assert [entry.path for entry in models[0].manifest.contents] == ["best.ckpt"]
        assert json.loads(models[0].metadata)["monitor"] == "val/iou_mean"
