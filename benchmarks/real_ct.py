"""How a checkpoint does on the real lumbar CT: masks against its label map, and centroids.

    python -m benchmarks.real_ct [--ckpt logs/train/runs/<run>/checkpoints/last.ckpt]
        [--out benchmarks/results/real_ct.md]

For L2-L5, crops are centred (a) on the label map's centroids, (b) on the weight-free
localiser's, and (c) on those re-centred by the network as predict does (`refine` in
conf/predict.yaml). Per level: IoU and Dice of the predicted mask against the label map (TotalSegmentator
model output, 3 mm voxels), and the distance (mm) from the predicted mask's centroid (the
report's `centroid_mm`) to the label centroid. Without --ckpt the newest default `python train.py`
checkpoint under logs/ is used.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from benchmarks.localization import TOTALSEG_IDS
from benchmarks.run import newest_default_checkpoint
from spine_lightning.core.io import write_text
from spine_lightning.data.assets import asset_path
from spine_lightning.data.crops import label_centroids
from spine_lightning.data.labels import level_value
from spine_lightning.inference.centres import automatic_centres
from spine_lightning.inference.checkpoints import load_segmentation_module
from spine_lightning.inference.predict import predict_config
from spine_lightning.inference.segment import predict_levels
from spine_lightning.inference.summary import level_summaries

LEVELS = ("L2", "L3", "L4", "L5")


def score(module, image: sitk.Image, truth_label: sitk.Image, truth_centres: dict, centres: dict) -> dict:
    """Per level: IoU, Dice and mask-centroid error (mm) of the prediction from crops at `centres`."""
    pred = predict_levels(module, image, {lv: centres[lv] for lv in LEVELS if lv in centres})
    summaries = level_summaries(pred, LEVELS)
    found = sitk.GetArrayViewFromImage(pred.label)
    truth = sitk.GetArrayViewFromImage(truth_label)
    ids = {name: v for v, name in TOTALSEG_IDS.items()}
    rows = {}
    for lv in LEVELS:
        p, t = found == level_value(lv), truth == ids[lv]
        inter, union = np.logical_and(p, t).sum(), np.logical_or(p, t).sum()
        centroid = summaries[lv][0]["centroid_mm"] if lv in summaries else None
        rows[lv] = dict(
            iou=inter / union if union else 0.0,
            dice=2 * inter / (p.sum() + t.sum()) if p.sum() + t.sum() else 0.0,
            centroid_error_mm=None
            if centroid is None
            else float(np.linalg.norm(np.subtract(centroid, truth_centres[lv]))),
            crop_error_mm=float(np.linalg.norm(np.subtract(centres[lv], truth_centres[lv]))) if lv in centres else None,
        )
    return rows


def table(results: dict[str, dict]) -> str:
    fmt = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731
    lines = ["| centres | metric | " + " | ".join(LEVELS) + " | mean |", "|---" * (len(LEVELS) + 3) + "|"]
    for source, rows in results.items():
        for key, name in (
            ("iou", "IoU"),
            ("dice", "Dice"),
            ("centroid_error_mm", "mask centroid error (mm)"),
            ("crop_error_mm", "crop centre error (mm)"),
        ):
            values = [rows[lv][key] for lv in LEVELS]
            known = [v for v in values if v is not None]
            mean = float(np.mean(known)) if len(known) == len(values) else None
            lines.append(f"| {source} | {name} | " + " | ".join(fmt(v) for v in values) + f" | {fmt(mean)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", help="checkpoint (default: newest default `python train.py` run)")
    parser.add_argument("--real", type=Path, default=asset_path("real_ct"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/real_ct.md"))
    args = parser.parse_args(argv)
    ckpt = args.ckpt or newest_default_checkpoint()
    if ckpt is None:
        parser.error("no --ckpt given and no default `python train.py` checkpoint under logs/")
    module = load_segmentation_module(ckpt)
    image = sitk.ReadImage(str(args.real / "lumbar_ct_3mm.nii.gz"))
    label = sitk.ReadImage(str(args.real / "lumbar_ct_3mm_vertebrae.nii.gz"))
    truth_centres = {TOTALSEG_IDS[v]: c for v, c in label_centroids(label).items() if v in TOTALSEG_IDS}
    refined, report = automatic_centres(module, image, LEVELS, predict_config().refine)
    coarse = {lv: tuple(c) for lv, c in report["centres_mm"].items()}
    results = {
        "label map": score(module, image, label, truth_centres, truth_centres),
        "localiser": score(module, image, label, truth_centres, coarse),
        "localiser + refinement": score(module, image, label, truth_centres, refined),
    }
    text = f"# Real lumbar CT: masks and centroids\n\ncheckpoint: `{ckpt}`\n\n{table(results)}\n"
    print(text)
    write_text(args.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
