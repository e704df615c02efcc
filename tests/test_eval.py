"""eval.py end to end, and the surface metrics that training's test stage adds to metrics.json."""

import csv
import json
import math

from conftest import ROOT, run_cli

LEVELS = ("L2", "L3", "L4", "L5")


def _eval_one_phantom(ckpt, out, run_dir, *overrides) -> None:
    """`eval.py` on one unseen phantom (the test split only), writing into `out`."""
    result = run_cli(
        ["eval.py", f"ckpt_path={ckpt}", "data.subjects.num_train=0", "data.subjects.num_val=0",
         "data.subjects.num_test=1", f"output_dir={out}", f"hydra.run.dir={run_dir}", *overrides],
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_eval_writes_metrics_and_per_case_csv(tiny_checkpoint, tmp_path):
    out = tmp_path / "eval"
    _eval_one_phantom(tiny_checkpoint, out, tmp_path / "run", "data.subjects.spacing=[1.6,1.6,3.0]")
    rows = list(csv.DictReader((out / "cases.csv").open()))
    assert [r["level"] for r in rows] == list(LEVELS)
    for r in rows:
        iou, dice = float(r["iou"]), float(r["dice"])
        assert 0.0 <= iou <= 1.0 and math.isclose(dice, 2 * iou / (1 + iou), rel_tol=1e-9)
        if int(r["predicted_voxels"]):
            assert 0.0 <= float(r["assd_mm"]) <= float(r["hd_mm"]) and float(r["hd95_mm"]) <= float(
                r["hd_mm"]
            )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["eval/cases"] == 1.0
    assert math.isclose(metrics["eval/iou_mean"], sum(float(r["iou"]) for r in rows) / len(rows))


def test_eval_rejects_unknown_centroid_source(tiny_checkpoint, tmp_path):
    result = run_cli(
        ["eval.py", f"ckpt_path={tiny_checkpoint}", "centroids=guess", f"hydra.run.dir={tmp_path}"], cwd=ROOT
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "error: centroids='guess' is not allowed: one of labels, automatic"
    ]


def test_training_test_stage_logs_surface_distances(tiny_checkpoint):
    metrics = json.loads((tiny_checkpoint.parent.parent / "metrics.json").read_text())
    # The tiny one-epoch model may miss a level entirely (no surface): then it is left out.
    assert any(f"test/assd_{lv}" in metrics for lv in LEVELS)
    for key in [k for k in metrics if k.startswith(("test/assd_", "test/hd95_"))]:
        assert math.isfinite(metrics[key]) and metrics[key] >= 0.0, key
    if "test/assd_mean" in metrics:
        per_level = [metrics[f"test/assd_{lv}"] for lv in LEVELS if f"test/assd_{lv}" in metrics]
        assert math.isclose(metrics["test/assd_mean"], sum(per_level) / len(per_level), rel_tol=1e-6)


def test_automatic_centroids_score_as_well_as_label_centroids(tmp_path):
    """eval centroids=automatic (localiser + refinement, as predict) against crops at the label
    centroids, with the shipped default model on one unseen phantom. Measured on the four test
    phantoms: Dice 0.954 (labels) and 0.953 (automatic)."""
    from conftest import DEFAULT_MODEL

    iou = {}
    for source in ("labels", "automatic"):
        _eval_one_phantom(DEFAULT_MODEL, tmp_path / source, tmp_path / "run" / source, f"centroids={source}")
        iou[source] = json.loads((tmp_path / source / "metrics.json").read_text())["eval/iou_mean"]
    assert iou["labels"] > 0.8 and iou["automatic"] >= iou["labels"] - 0.03, iou


def test_eval_scores_a_single_subject_test_manifest(tiny_checkpoint, tmp_path):
    """Scoring needs only the subjects it scores: one `split=test` subject is enough for eval.py."""
    from real_ct_trees import CT, LABEL, write_manifest

    manifest = write_manifest(tmp_path / "m.csv", [("only", str(CT), str(LABEL))], {"split": ["test"]})
    out = tmp_path / "eval"
    result = run_cli(
        ["eval.py", f"ckpt_path={tiny_checkpoint}", "data=folder", f"data.manifest={manifest}",
         "data.label_map=totalseg", f"output_dir={out}", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((out / "metrics.json").read_text())["eval/cases"] == 1.0


def test_eval_preview_draws_reference_and_prediction_of_every_level(tmp_path):
    """The per-case picture: a PNG, with a label for every level in the reference or prediction,
    and the reference contour drawn even where the prediction is empty."""
    import SimpleITK as sitk

    from spine_lightning.data.phantom import PhantomSpec, make_phantom
    from spine_lightning.evaluation.preview import write_comparison_preview

    image, truth = make_phantom(3, PhantomSpec(spacing=(1.6, 1.6, 3.0)))
    empty = sitk.Image(truth.GetSize(), truth.GetPixelID())
    empty.CopyInformation(truth)
    path = tmp_path / "case_preview.png"
    drawn = write_comparison_preview(path, image, truth, empty, LEVELS)
    assert drawn == list(LEVELS)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
