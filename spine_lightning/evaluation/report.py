"""Ablation report of a Hydra multirun: `python -m spine_lightning.evaluation.report <multirun dir>`.

Reads every run's `metrics.json`, `test_cases.csv` and Hydra config, groups the runs by their
`experiment` choice (baseline, edge, adv, edge_adv, ...) and writes into the multirun directory:
`ablation.md` (the paper's Table 1 with mean ± std over seeds/folds; per data source; under each
test perturbation; each method's paired difference from the baseline with its 95 % interval and
Wilcoxon p-value, comparison.py, and in words which differences are real), `ablation.csv` (the
table, machine-readable), `runs.csv` (one row per run with the command that reproduces it) and
`ablation.png` (grouped bars with error bars, one group per level).
A run without `metrics.json` is listed as crashed. A missed vertebra is already a 0 in the run's
metrics; a level absent from them had no crop tested, so it is left out of that run's means (the
count of runs behind each cell is shown), as `per_level_means` rules everywhere.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from spine_lightning.core.errors import SpineError
from spine_lightning.core.io import atomic_path
from spine_lightning.evaluation.comparison import compare_with_baseline
from spine_lightning.evaluation.metrics import per_level_means

# The paper's four methods first, in the order of its ablation; any other experiment follows.
METHOD_ORDER = ("baseline", "edge", "adv", "edge_adv")
DEFAULT_LEVELS = ("L2", "L3", "L4", "L5")
METRICS = ("iou", "dice")
METRIC_NAMES = {"iou": "IoU", "dice": "Dice"}


@dataclass
class Run:
    path: Path
    method: str
    levels: list[str]
    metrics: dict[str, float] | None  # None: the run crashed (no metrics.json)
    missing: list[str] = field(default_factory=list)  # levels not tested: left out of its means
    seed: int | None = None
    command: str = ""  # `python train.py ...` that reruns this one job
    cases: list[dict] = field(default_factory=list)  # test_cases.csv: condition, subject, level, value


@dataclass
class Table:
    metric: str
    methods: list[str]
    rows: list[str]  # levels, then "mean"
    values: dict[tuple[str, str], list[float]]  # (row, method) -> one value per finished run

    def stats(self, row: str, method: str) -> tuple[float, float, int]:
        """Mean, sample standard deviation (0 for a single run) and number of runs."""
        vals = self.values.get((row, method), [])
        if not vals:
            return math.nan, math.nan, 0
        mean = sum(vals) / len(vals)
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
        return mean, std, len(vals)

    def best(self, row: str) -> list[str]:
        """The methods with the highest mean in this row (all of them on a tie)."""
        means = {m: self.stats(row, m)[0] for m in self.methods}
        means = {m: v for m, v in means.items() if not math.isnan(v)}
        top = max(means.values(), default=math.nan)
        return [m for m, v in means.items() if math.isclose(v, top, rel_tol=0, abs_tol=1e-12)]


def _read_yaml(path: Path) -> dict:
    try:
        return yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise SpineError(f"{path}: cannot read Hydra config ({err.__class__.__name__})") from err


def _method_of(hydra_cfg: dict, overrides: list[str]) -> str:
    """The run's `experiment` choice; `default` when the run used none."""
    choice = (hydra_cfg.get("hydra", {}).get("runtime", {}).get("choices", {}) or {}).get("experiment")
    if choice:
        return str(choice)
    for item in overrides:
        key, _, value = item.lstrip("+~").partition("=")
        if key == "experiment" and value:
            return value
    return "default"


def read_run(run_dir: Path, metric: str = "iou") -> Run:
    hydra_dir = run_dir / ".hydra"
    config = _read_yaml(hydra_dir / "config.yaml") if (hydra_dir / "config.yaml").exists() else {}
    overrides = _read_yaml(hydra_dir / "overrides.yaml") if (hydra_dir / "overrides.yaml").exists() else []
    hydra_cfg = _read_yaml(hydra_dir / "hydra.yaml") if (hydra_dir / "hydra.yaml").exists() else {}
    levels = list((config.get("data") or {}).get("levels") or DEFAULT_LEVELS)
    method = _method_of(hydra_cfg, overrides or [])
    metrics_file = run_dir / "metrics.json"
    if not metrics_file.exists():
        return Run(run_dir, method, levels, None)
    try:
        metrics = json.loads(metrics_file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise SpineError(f"{metrics_file}: not valid JSON ({err})") from err
    if not isinstance(metrics, dict):
        raise SpineError(f"{metrics_file}: expected a JSON object of metric names to numbers")
    missing = [lv for lv in levels if f"test/{metric}_{lv}" not in metrics]
    task = ((hydra_cfg.get("hydra") or {}).get("overrides") or {}).get("task") or overrides or []
    # the job alone: the sweep config would start a multirun again
    command = shlex.join(["python", "train.py", *(o for o in task if not o.lstrip("+~").startswith("sweep="))])
    return Run(run_dir, method, levels, {k: float(v) for k, v in metrics.items()}, missing,
               config.get("seed"), command, _read_cases(run_dir / "test_cases.csv", metric))


def _read_cases(path: Path, metric: str) -> list[dict]:
    if not path.exists():  # a run from before per-case rows were written: no paired comparison
        return []
    try:
        with path.open(newline="") as f:
            return [dict(condition=r["condition"], subject=r["subject"], level=r["level"], value=float(r[metric]))
                    for r in csv.DictReader(f)]
    except (OSError, KeyError, ValueError) as err:
        raise SpineError(f"{path}: not a test-case table with condition, subject, level, {metric} ({err})") from err


def find_runs(sweep_dir: Path, metric: str = "iou") -> list[Run]:
    """Every Hydra job directory (one holding `.hydra/`) below the multirun directory."""
    if not sweep_dir.is_dir():
        raise SpineError(f"{sweep_dir}: no such multirun directory")
    job_dirs = sorted({p.parent for p in sweep_dir.rglob(".hydra") if p.is_dir() and p.parent != sweep_dir},
                      key=lambda p: (len(p.parts), int(p.name) if p.name.isdigit() else math.inf, str(p)))
    if not job_dirs:
        raise SpineError(f"{sweep_dir}: no runs found (expected job folders 0/, 1/, ... with .hydra/ inside)")
    return [read_run(d, metric) for d in job_dirs]


def build_table(runs: list[Run], metric: str = "iou") -> Table:
    done = [r for r in runs if r.metrics is not None]
    present = {r.method for r in runs}
    methods = [m for m in METHOD_ORDER if m in present] + sorted(present - set(METHOD_ORDER))
    levels: list[str] = []
    for run in done:
        levels += [lv for lv in run.levels if lv not in levels]
    values: dict[tuple[str, str], list[float]] = {}
    for run in done:
        rows = [dict(level=lv, value=run.metrics[f"test/{metric}_{lv}"]) for lv in run.levels
                if f"test/{metric}_{lv}" in run.metrics]
        means = per_level_means(rows, run.levels, {metric: "value"}, "run")  # a level not tested: absent
        for row in [*run.levels, "mean"]:
            if f"run/{metric}_{row}" in means:
                values.setdefault((row, run.method), []).append(means[f"run/{metric}_{row}"])
    return Table(metric, methods, [*levels, "mean"], values)


def _fmt(mean: float, std: float) -> str:
    return "–" if math.isnan(mean) else f"{mean:.3f} ± {std:.3f}"


def write_csv(table: Table, path: Path) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["level", *(f"{m}_{s}" for m in table.methods for s in ("mean", "std", "n")), "best"])
        for row in table.rows:
            cells = []
            for m in table.methods:
                mean, std, n = table.stats(row, m)
                cells += ["" if n == 0 else f"{mean:.6f}", "" if n == 0 else f"{std:.6f}", n]
            writer.writerow([row, *cells, " ".join(table.best(row))])


def markdown(table: Table, runs: list[Run], sweep_dir: Path) -> str:
    name = METRIC_NAMES[table.metric]
    lines = [f"# Ablation: test {name} per level ({sweep_dir.name})", "",
             "Mean ± sample std over the finished runs of each method; **bold** is the best mean per row. "
             "A level missing from a run's metrics (no crop of it tested) is left out of that run's means; "
             "(n=…) gives the runs behind a cell when fewer than the method's finished runs.", "",
             "| level | " + " | ".join(table.methods) + " |",
             "|---|" + "---|" * len(table.methods)]
    finished = {m: sum(1 for r in runs if r.method == m and r.metrics is not None) for m in table.methods}
    for row in table.rows:
        best, cells = table.best(row), []
        for m in table.methods:
            mean, std, n = table.stats(row, m)
            text = _fmt(mean, std) + (f" (n={n})" if 0 < n < finished[m] else "")
            cells.append(f"**{text}**" if m in best else text)
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    crashed = [r for r in runs if r.metrics is None]
    lines.append("| runs | " + " | ".join(str(finished[m]) for m in table.methods) + " |")
    lines += _extra_tables(table, runs) + _comparison(table, runs)
    lines += ["", f"Runs: {len(runs)} found, {len(runs) - len(crashed)} finished, {len(crashed)} crashed."]
    if crashed:
        lines += ["", "Crashed runs (no metrics.json), not in the table:"]
        lines += [f"- `{r.path.relative_to(sweep_dir)}` ({r.method})" for r in crashed]
    zeroed = [r for r in runs if r.metrics is not None and r.missing]
    if zeroed:
        lines += ["", "Levels missing from a run's metrics (not tested), left out of its means:"]
        lines += [f"- `{r.path.relative_to(sweep_dir)}` ({r.method}): {', '.join(r.missing)}" for r in zeroed]
    return "\n".join(lines) + "\n"


def _mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return _fmt(mean, std)


def _key_table(title: str, keys: dict[str, str], methods: list[str], runs: list[Run]) -> list[str]:
    """A table of one metric key per row (`keys`: row name -> metrics key), mean ± std per method."""
    done = [r for r in runs if r.metrics is not None]
    lines = ["", title, "", "| | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for row, key in keys.items():
        cells = [_mean_std([r.metrics[key] for r in done if r.method == m and key in r.metrics]) for m in methods]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return lines


def _extra_tables(table: Table, runs: list[Run]) -> list[str]:
    """Mean over levels per data source (data=mix) and under each test perturbation."""
    metric, name = table.metric, METRIC_NAMES[table.metric]
    keys = sorted({k for r in runs if r.metrics for k in r.metrics})
    lines = []
    sources = {k.split("/")[1]: k for k in keys if k.startswith("test/") and k.endswith(f"/{metric}_mean")
               and k.count("/") == 2}
    if sources:
        lines += _key_table(f"Mean test {name} per data source:", sources, table.methods, runs)
    conditions = {k.split("/")[0].removeprefix("test_"): k for k in keys
                  if k.startswith("test_") and k.endswith(f"/{metric}_mean") and k.count("/") == 1}
    if conditions:
        lines += _key_table(f"Robustness: mean test {name} on clean and on perturbed test crops "
                            "(`test_perturbations`):", {"clean": f"test/{metric}_mean", **conditions},
                            table.methods, runs)
    return lines


def _case_values(runs: list[Run]) -> dict:
    return {(r.method, r.seed): r.cases for r in runs if r.metrics is not None and r.cases}


def _comparison(table: Table, runs: list[Run]) -> list[str]:
    """Paired differences from the baseline, per level on clean crops, overall under perturbation."""
    cases = _case_values(runs)
    if "baseline" not in table.methods or not cases:
        return []
    name = METRIC_NAMES[table.metric]
    rows = list(table.rows)
    clean = compare_with_baseline(cases, table.methods, rows)
    lines = ["", f"Against the baseline (clean test crops): mean paired difference of {name} over seeds × "
             "test cases, [95 % interval], Wilcoxon signed-rank p; **bold**: significant (p < 0.05 and "
             "the interval excludes 0).", "",
             "| method | " + " | ".join(rows) + " |", "|---|" + "---|" * len(rows)]
    for method in [m for m in table.methods if m != "baseline"]:
        cells = []
        for d in (d for d in clean if d.method == method):
            text = "–" if d.n < 2 else f"{d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}] p={d.p:.2g}"
            cells.append(f"**{text}**" if d.significant else text)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    conditions = sorted({c["condition"] for rs in cases.values() for c in rs} - {"test"})
    perturbed = [(c, d) for c in conditions for d in compare_with_baseline(cases, table.methods, ["mean"], condition=c)]
    verdicts = [d.words(name) for d in clean if d.row == "mean" or d.significant]
    verdicts += [f"under {c.removeprefix('test_')}: " + d.words(name) for c, d in perturbed]
    real = [d for d in clean if d.significant] + [d for _, d in perturbed if d.significant]
    lines += ["", "In words" + ("" if real else ": no difference from the baseline is significant") + ":", ""]
    lines += [f"- {v}" for v in verdicts]
    return lines


def write_runs_csv(runs: list[Run], path: Path, metric: str = "iou") -> None:
    """One row per finished run: experiment, seed, the command that reruns it, its test metrics."""
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    done = sorted((r for r in runs if r.metrics is not None),
                  key=lambda r: (rank.get(r.method, len(rank)), r.method, r.seed is None, r.seed or 0))
    levels = [lv for r in done for lv in r.levels]
    main = [f"test/{metric}_{lv}" for lv in dict.fromkeys(levels)] + [f"test/{metric}_mean"]
    extra = sorted({k for r in done for k in r.metrics if k.endswith(f"{metric}_mean") and k not in main})
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["experiment", "seed", "command", *main, *extra])
        for r in done:
            writer.writerow([r.method, r.seed, r.command,
                             *("" if k not in r.metrics else f"{r.metrics[k]:.4f}" for k in main + extra)])


def plot(table: Table, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    n = max(1, len(table.methods))
    width = 0.8 / n
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(table.rows), 4))
    for i, method in enumerate(table.methods):
        stats = [table.stats(row, method) for row in table.rows]
        xs = [j + (i - (n - 1) / 2) * width for j in range(len(table.rows))]
        ax.bar(xs, [s[0] for s in stats], width, yerr=[s[1] for s in stats], capsize=3,
               label=f"{method} (n={max(s[2] for s in stats)})")
    ax.set_xticks(range(len(table.rows)), table.rows)
    ax.set_ylim(0, 1)
    ax.set_ylabel(f"test {METRIC_NAMES[table.metric]} (mean ± std)")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def write_report(sweep_dir: str | Path, metric: str = "iou") -> dict[str, Path]:
    """Write ablation.md, ablation.csv, runs.csv and ablation.png into the multirun directory."""
    if metric not in METRICS:
        raise SpineError(f"--metric {metric}: not allowed; one of {', '.join(METRICS)}")
    sweep_dir = Path(sweep_dir)
    runs = find_runs(sweep_dir, metric)
    table = build_table(runs, metric)
    if not any(r.metrics is not None for r in runs):
        raise SpineError(f"{sweep_dir}: none of the {len(runs)} runs finished (no metrics.json in any)")
    out = {kind: sweep_dir / f"ablation.{kind}" for kind in ("md", "csv", "png")}
    out["runs"] = sweep_dir / "runs.csv"
    write_runs_csv(runs, out["runs"], metric)
    write_csv(table, out["csv"])
    plot(table, out["png"])
    with atomic_path(out["md"]) as tmp:
        tmp.write_text(markdown(table, runs, sweep_dir))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m spine_lightning.evaluation.report",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("sweep_dir", help="a Hydra multirun directory, e.g. logs/train/multiruns/<time>")
    parser.add_argument("--metric", default="iou", choices=METRICS, help="per-level metric to tabulate")
    args = parser.parse_args(argv)
    try:
        out = write_report(args.sweep_dir, args.metric)
    except SpineError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    print(out["md"].read_text(), end="")
    print("wrote " + ", ".join(str(p) for p in out.values()))


if __name__ == "__main__":
    main()
