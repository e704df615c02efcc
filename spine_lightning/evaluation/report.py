"""Ablation report of a Hydra multirun: `python -m spine_lightning.evaluation.report <multirun dir>`.

Reads every run's `metrics.json` and Hydra config, groups the runs by their `experiment` choice
(baseline, edge, adv, edge_adv, ...) and writes into the multirun directory:
`ablation.md` (the paper's Table 1 with mean ± std over seeds/folds), `ablation.csv` (the same
numbers, machine-readable) and `ablation.png` (grouped bars with error bars, one group per level).
A run without `metrics.json` is listed as crashed. A missed vertebra is already a 0 in the run's
metrics; a level absent from them had no crop tested, so it is left out of that run's means (the
count of runs behind each cell is shown), as `per_level_means` rules everywhere.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from spine_lightning.core.errors import SpineError
from spine_lightning.core.io import atomic_path
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
    return Run(run_dir, method, levels, {k: float(v) for k, v in metrics.items()}, missing)


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
    lines += ["", f"Runs: {len(runs)} found, {len(runs) - len(crashed)} finished, {len(crashed)} crashed."]
    if crashed:
        lines += ["", "Crashed runs (no metrics.json), not in the table:"]
        lines += [f"- `{r.path.relative_to(sweep_dir)}` ({r.method})" for r in crashed]
    zeroed = [r for r in runs if r.metrics is not None and r.missing]
    if zeroed:
        lines += ["", "Levels missing from a run's metrics (not tested), left out of its means:"]
        lines += [f"- `{r.path.relative_to(sweep_dir)}` ({r.method}): {', '.join(r.missing)}" for r in zeroed]
    return "\n".join(lines) + "\n"


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
    """Write ablation.md, ablation.csv and ablation.png into the multirun directory."""
    if metric not in METRICS:
        raise SpineError(f"--metric {metric}: not allowed; one of {', '.join(METRICS)}")
    sweep_dir = Path(sweep_dir)
    runs = find_runs(sweep_dir, metric)
    table = build_table(runs, metric)
    if not any(r.metrics is not None for r in runs):
        raise SpineError(f"{sweep_dir}: none of the {len(runs)} runs finished (no metrics.json in any)")
    out = {kind: sweep_dir / f"ablation.{kind}" for kind in ("md", "csv", "png")}
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
