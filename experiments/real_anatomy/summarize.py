"""One row per step and held-out subject of the leave-one-subject-out runs (loso.sh): test IoU,
Dice, ASSD and HD95 per level, and the mean IoU per step over the held-out levels.

    python experiments/real_anatomy/summarize.py logs/real_anatomy [--out experiments/real_anatomy/loso.md]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

STEPS = ("phantoms", "augmented", "synthetic", "full")
LEVELS = ("L2", "L3", "L4", "L5")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path)
    parser.add_argument("--out", type=Path, default=Path("experiments/real_anatomy/loso.md"))
    args = parser.parse_args(argv)
    rows = ["| step | held out | " + " | ".join(f"{lv} IoU / Dice / ASSD / HD95" for lv in LEVELS) + " |",
            "|---|---|" + "---|" * len(LEVELS)]
    means = []
    for step in STEPS:
        ious = []
        for run in sorted(args.runs.glob(f"{step}_*")):
            metrics_file = run / "metrics.json"
            if not metrics_file.is_file():
                continue
            m = json.loads(metrics_file.read_text())
            cells = []
            for lv in LEVELS:
                if f"test/iou_{lv}" in m:
                    ious.append(m[f"test/iou_{lv}"])
                    cells.append(" / ".join(f"{m[f'test/{k}_{lv}']:.2f}" for k in ("iou", "dice", "assd", "hd95")))
                else:
                    cells.append("–")
            rows.append(f"| {step} | {run.name.split('_', 1)[1]} | " + " | ".join(cells) + " |")
        if ious:
            means.append(f"{step}: {np.mean(ious):.3f} over {len(ious)} held-out levels")
    text = "\n".join(rows + ["", "Mean test IoU per step: " + "; ".join(means) + "."]) + "\n"
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
