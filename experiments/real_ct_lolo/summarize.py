"""Table of held-out-level IoU from the study's multirun:
`python experiments/real_ct_lolo/summarize.py MULTIRUN_DIR`."""

import json
import re
import sys
from pathlib import Path


def rows(multirun: Path):
    for job in sorted(multirun.iterdir(), key=lambda p: int(p.name) if p.name.isdigit() else -1):
        overrides = job / ".hydra" / "overrides.yaml"
        if not overrides.exists() or not (job / "metrics.json").exists():
            continue
        text = overrides.read_text()
        held = re.search(r"holdout_(L\d)\.csv", text).group(1)
        experiment = re.search(r"experiment=(\w+)", text).group(1)
        metrics = json.loads((job / "metrics.json").read_text())
        yield experiment, held, metrics.get(f"test/iou_{held}"), metrics.get(f"test/dice_{held}")


def main(multirun: Path) -> str:
    table = {}
    for experiment, held, iou, dice in rows(multirun):
        table.setdefault(experiment, {})[held] = (iou, dice)
    levels = ["L2", "L3", "L4", "L5"]
    lines = ["| training | " + " | ".join(f"IoU {lvl} held out" for lvl in levels) + " | mean |",
             "|---" * (len(levels) + 2) + "|"]
    for experiment, cells in sorted(table.items()):
        ious = [cells.get(lvl, (None, None))[0] for lvl in levels]
        done = [v for v in ious if v is not None]
        mean = sum(done) / len(done) if done else float("nan")
        lines.append(f"| {experiment} | " + " | ".join("-" if v is None else f"{v:.3f}" for v in ious)
                     + f" | {mean:.3f} |")
    out = "\n".join(lines)
    print(out)
    return out


if __name__ == "__main__":
    main(Path(sys.argv[1]))
