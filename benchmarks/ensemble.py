"""One bundled network or both as an ensemble, with or without test-time mirroring: held-out IoU and time.

    python -m benchmarks.ensemble [--out benchmarks/results/ensemble.md]

Two tables, each measured in this one run:
- IoU per level on the two real scans the bundled networks never trained on (crops at the reference
  centroids, as `eval.py data=real split=val|test`), for the first network alone and for the ensemble
  (`checkpoints.Ensemble`), each without and with test-time mirroring;
- `predict.py` on the large procedural CT of the benchmark suite (512 x 512 x 400 voxels), total
  seconds: the first network with mirroring (the default until the night of 2026-11-29) against the ensemble
  without it (the default since), twice each, alternating.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
from pathlib import Path

import torch

from spine_lightning.core.io import write_text
from spine_lightning.data.crops import label_centroids
from spine_lightning.data.labels import VERSE_NAMES
from spine_lightning.evaluation.score import score_levels
from spine_lightning.inference.checkpoints import BUNDLED_MODEL, BUNDLED_MODELS, load_model
from spine_lightning.inference.segment import predict_levels

from .inference_modes import LEVELS, _real_subjects
from .large_scan import predict_large

MODELS = {"first network": [BUNDLED_MODEL], "ensemble of both": list(BUNDLED_MODELS)}


def held_out_iou() -> dict[tuple[str, bool], list[tuple[str, str, float]]]:
    """(model, mirroring) -> [(scan, level, IoU)] on the real scans never trained on."""
    out = {}
    subjects = [s for s in _real_subjects() if s.split != "train"]
    for name, paths in MODELS.items():
        model = load_model(paths, precision="auto")
        for mirror in (False, True):
            rows = out.setdefault((name, mirror), [])
            for subject in subjects:
                image, truth = subject.load()
                centres = {VERSE_NAMES[v]: c for v, c in label_centroids(truth).items() if VERSE_NAMES.get(v) in LEVELS}
                pred = predict_levels(model, image, centres, mirror_lr=mirror).label
                rows += [(subject.id, r["level"], r["iou"]) for r in score_levels(pred, truth, LEVELS)]
    return out


def predict_seconds(rounds: int) -> dict[str, list[float]]:
    """predict.py's total seconds on the large CT: one network mirrored, the ensemble not, alternating."""
    runs = {"first network, mirrored": (str(BUNDLED_MODEL), True), "ensemble of both, not mirrored": (None, False)}
    out = {name: [] for name in runs}
    for _ in range(rounds):
        for name, (ckpt, mirror) in runs.items():
            report, _, _ = predict_large(ckpt, (512, 512, 400), mirror_lr=mirror)
            out[name].append(report["timings"]["total_s"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ensemble.md"))
    args = parser.parse_args()
    iou = held_out_iou()
    seconds = predict_seconds(rounds=2)
    keys = list(iou)
    levels = [(scan, level) for scan, level, _ in iou[keys[0]]]
    header = " | ".join(f"{name}{', mirrored' if mirror else ''}" for name, mirror in keys)
    lines = [
        f"# One network or an ensemble ({datetime.date.today()}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads)",
        "",
        f"`python -m benchmarks.ensemble`; the bundled networks {', '.join(p.name for p in BUNDLED_MODELS)} "
        "(the first network: the first of them); `precision=auto`",
        "",
        "IoU on the real scans never trained on (reference centroids):",
        "",
        f"| scan | level | {header} |",
        "|---|---|" + "---|" * len(keys),
        *(f"| {scan} | {level} | " + " | ".join(f"{iou[k][i][2]:.4f}" for k in keys) + " |"
          for i, (scan, level) in enumerate(levels)),
        "| mean | | " + " | ".join(f"**{statistics.mean(r[2] for r in iou[k]):.4f}**" for k in keys) + " |",
        "",
        "`predict.py` on the large procedural CT (512 x 512 x 400), total seconds, alternating:",
        "",
        "| model | runs (s) | mean (s) |",
        "|---|---|---|",
        *(f"| {name} | {', '.join(f'{t:.1f}' for t in ts)} | {statistics.mean(ts):.1f} |"
          for name, ts in seconds.items()),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    write_text(args.out, text)


if __name__ == "__main__":
    main()
