"""The ablation report on a synthetic multirun directory laid out as Hydra writes it."""

import csv
import json
import statistics

import matplotlib.image
import pytest
import yaml
from conftest import ROOT, run_cli

from spine_lightning.core.errors import SpineError
from spine_lightning.evaluation.report import write_report

LEVELS = ["L2", "L3", "L4", "L5"]


def make_job(sweep, num, method, metrics, levels=LEVELS):
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    choices = {"hydra": {"runtime": {"choices": {"experiment": method}}}}
    (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(choices))
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"data": {"levels": levels}, "seed": num}))
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"+experiment={method}", f"seed={num}"]))
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))
    return job


def iou(method_index, seed, level_index):
    return 0.5 + 0.1 * method_index + 0.01 * level_index + 0.02 * seed


@pytest.fixture
def sweep(tmp_path):
    """4 methods x 2 seeds; edge_adv seed 1 crashed; adv seed 1 has no L5 (no crop of it tested)."""
    expected, num = {}, 0
    for m, method in enumerate(["baseline", "edge", "adv", "edge_adv"]):
        for seed in (0, 1):
            metrics = {f"test/iou_{lv}": iou(m, seed, j) for j, lv in enumerate(LEVELS)}
            if method == "adv" and seed == 1:
                del metrics["test/iou_L5"]
            crashed = method == "edge_adv" and seed == 1
            make_job(tmp_path, num, method, None if crashed else metrics)
            if not crashed:
                for lv in LEVELS:
                    if f"test/iou_{lv}" in metrics:
                        expected.setdefault((method, lv), []).append(metrics[f"test/iou_{lv}"])
            num += 1
    return tmp_path, expected


def read_csv(path):
    with open(path, newline="") as f:
        return {row["level"]: row for row in csv.DictReader(f)}


def test_table_means_stds_counts_and_best(sweep):
    sweep_dir, expected = sweep
    out = write_report(sweep_dir)
    rows = read_csv(out["csv"])
    assert list(rows) == [*LEVELS, "mean"]
    for (method, lv), values in expected.items():
        assert float(rows[lv][f"{method}_mean"]) == pytest.approx(statistics.mean(values), abs=1e-6)
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        assert float(rows[lv][f"{method}_std"]) == pytest.approx(std, abs=1e-6)
        assert int(rows[lv][f"{method}_n"]) == len(values)
    # the untested L5 is left out, not a 0: adv's L5 mean is its one value, over one run
    assert float(rows["L5"]["adv_mean"]) == pytest.approx(iou(2, 0, 3), abs=1e-6)
    assert rows["L5"]["adv_n"] == "1"
    # ... and the second run's mean over levels is over the three it tested
    adv_means = [statistics.mean(iou(2, 0, j) for j in range(4)), statistics.mean(iou(2, 1, j) for j in range(3))]
    assert float(rows["mean"]["adv_mean"]) == pytest.approx(statistics.mean(adv_means), abs=1e-6)
    # edge_adv (best method by construction) wins every row although one of its runs crashed
    assert {row["best"] for row in rows.values()} == {"edge_adv"}
    assert rows["L2"]["edge_adv_n"] == "1"


def test_markdown_lists_crashed_runs_and_zeroed_levels(sweep):
    sweep_dir, _ = sweep
    md = write_report(sweep_dir)["md"].read_text()
    header = next(line for line in md.splitlines() if line.startswith("| level"))
    assert header == "| level | baseline | edge | adv | edge_adv |"
    assert "| runs | 2 | 2 | 2 | 1 |" in md
    assert "8 found, 7 finished, 1 crashed" in md
    assert "- `7` (edge_adv)" in md  # the crashed run, by its job folder
    assert "- `5` (adv): L5" in md  # the level not tested
    l5 = next(line for line in md.splitlines() if line.startswith("| L5 "))
    assert "(n=1)" in l5.split("|")[4]  # adv's L5: one of its two runs
    l2 = next(line for line in md.splitlines() if line.startswith("| L2 "))
    assert l2.count("**") == 2 and l2.split("|")[5].strip().startswith("**")


def test_png_is_an_image(sweep):
    sweep_dir, _ = sweep
    image = matplotlib.image.imread(write_report(sweep_dir)["png"])
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_dice_table(tmp_path):
    make_job(tmp_path, 0, "edge", {"test/dice_L2": 0.9, "test/iou_L2": 0.8}, levels=["L2"])
    rows = read_csv(write_report(tmp_path, metric="dice")["csv"])
    assert float(rows["L2"]["edge_mean"]) == pytest.approx(0.9)


def test_no_finished_run_is_an_error(tmp_path):
    make_job(tmp_path, 0, "baseline", None)
    with pytest.raises(SpineError, match="none of the 1 runs finished"):
        write_report(tmp_path)
    assert not list(tmp_path.glob("ablation*"))


def test_cli_bad_directory_is_one_line(tmp_path):
    result = run_cli(["-m", "spine_lightning.evaluation.report", str(tmp_path / "missing")], cwd=ROOT)
    assert result.returncode != 0
    expected = f"error: {tmp_path / 'missing'}: no such multirun directory"
    assert result.stderr.strip().splitlines() == [expected]


def write_cases(job, rows):
    with open(job / "test_cases.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["condition", "source", "subject", "level", "iou", "dice"])
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture
def paired_sweep(tmp_path):
    """3 seeds x 10 cases: edge better than baseline by 0.05 on every case (plus case noise), adv
    equal to it up to symmetric noise; under noise, adv keeps its clean score and baseline drops."""
    import numpy as np

    rng = np.random.default_rng(0)
    num = 0
    for seed in (1, 2, 3):
        base = {(f"s{i}", lv): 0.6 + 0.3 * rng.random() for i in range(5) for lv in ("L2", "L3")}
        jitter = {k: rng.normal(0, 0.01) for k in base}
        shifted = {"baseline": {k: v for k, v in base.items()},
                   "edge": {k: v + 0.05 + jitter[k] for k, v in base.items()},
                   "adv": {k: v + (jitter[k] if i % 2 else -jitter[k]) for i, (k, v) in enumerate(base.items())}}
        for method, values in shifted.items():
            noisy_drop = 0.0 if method == "adv" else 0.2
            metrics = {"test/iou_L2": np.mean([v for (s, lv), v in values.items() if lv == "L2"]),
                       "test/iou_L3": np.mean([v for (s, lv), v in values.items() if lv == "L3"]),
                       "test/real/iou_mean": 0.4, "test_noise/iou_mean": 0.5}
            metrics["test/iou_mean"] = (metrics["test/iou_L2"] + metrics["test/iou_L3"]) / 2
            job = make_job(tmp_path, num, method, {k: float(v) for k, v in metrics.items()}, levels=["L2", "L3"])
            config = {"data": {"levels": ["L2", "L3"]}, "seed": seed}
            (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
            task = {"hydra": {"runtime": {"choices": {"experiment": method}},
                              "overrides": {"task": ["+sweep=ablation", "+recipe=study_cpu",
                                                     f"+experiment={method}", f"seed={seed}"]}}}
            (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(task))
            rows = [dict(condition="test", source="real", subject=s, level=lv, iou=v, dice=v)
                    for (s, lv), v in values.items()]
            rows += [dict(condition="test_noise", source="real", subject=s, level=lv, iou=v - noisy_drop, dice=v)
                     for (s, lv), v in values.items()]
            write_cases(job, rows)
            num += 1
    return tmp_path


def test_paired_comparison_finds_the_real_difference_and_only_it(paired_sweep):
    md = write_report(paired_sweep)["md"].read_text()
    words = [line for line in md.splitlines() if line.startswith("- ")]
    edge = next(w for w in words if w.startswith("- edge vs baseline, mean"))
    assert 0.04 < float(edge.split(": ")[1].split()[0]) < 0.06  # the built-in +0.05, up to case noise
    assert edge.endswith("higher") and "over 30 pairs" in edge
    adv = next(w for w in words if w.startswith("- adv vs baseline, mean"))
    assert adv.endswith("no significant difference")
    # under noise the baseline lost 0.2 and adv nothing: adv is significantly better there
    noisy = next(w for w in words if w.startswith("- under noise: adv vs baseline"))
    assert 0.19 < float(noisy.split("mean: ")[1].split()[0]) < 0.21 and noisy.endswith("higher")
    edge_row = next(line for line in md.splitlines() if line.startswith("| edge | **+"))
    assert edge_row.count("**") == 6  # L2, L3 and mean all significant
    adv_row = next(line for line in md.splitlines() if line.startswith("| adv | "))
    assert "**" not in adv_row
    assert "| clean |" in md and "| noise |" in md and "| real |" in md


def test_runs_csv_has_a_rerun_command_per_run(paired_sweep):
    with open(write_report(paired_sweep)["runs"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 9
    first = rows[0]
    assert list(first)[:6] == ["experiment", "seed", "command", "test/iou_L2", "test/iou_L3", "test/iou_mean"]
    # the job alone (no +sweep, which would start the whole multirun again)
    assert first["command"] == "python train.py +recipe=study_cpu +experiment=baseline seed=1"
    assert "test_noise/iou_mean" in first and "test/real/iou_mean" in first
