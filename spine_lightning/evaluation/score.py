"""The eval task behind `eval.py`: predict every test subject on its own grid and score each level
against its label map in physical space (IoU, Dice, ASSD, HD95, HD in millimetres)."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import hydra
import SimpleITK as sitk
from omegaconf import DictConfig
from rich.progress import track

from spine_lightning.core.errors import ConfigError
from spine_lightning.core.io import atomic_path, write_json
from spine_lightning.data.crops import label_centroids
from spine_lightning.data.labels import VERSE_NAMES, level_value
from spine_lightning.evaluation.metrics import overlap, per_level_means, surface_distances
from spine_lightning.evaluation.preview import write_comparison_preview
from spine_lightning.inference.centres import automatic_centres
from spine_lightning.inference.checkpoints import checkpoint_paths, load_model
from spine_lightning.inference.segment import predict_levels

log = logging.getLogger(__name__)
CENTROID_SOURCES = ("labels", "automatic")
CSV_FIELDS = (
    "subject",
    "level",
    "iou",
    "dice",
    "assd_mm",
    "hd95_mm",
    "hd_mm",
    "predicted_voxels",
    "true_voxels",
)


def score_levels(pred: sitk.Image, truth: sitk.Image, levels) -> list[dict]:
    """Per-level scores of a predicted label map against the truth on the same grid."""
    rows = []
    p_arr, t_arr = sitk.GetArrayViewFromImage(pred), sitk.GetArrayViewFromImage(truth)
    for level in levels:
        value = level_value(level)
        p, t = p_arr == value, t_arr == value
        if not t.any():
            continue
        d = surface_distances(pred == value, truth == value)
        rows.append(
            dict(
                level=level,
                **overlap(p, t),
                assd_mm=d["assd"],
                hd95_mm=d["hd95"],
                hd_mm=d["hd"],
                predicted_voxels=int(p.sum()),
                true_voxels=int(t.sum()),
            )
        )
    return rows


def summarise(rows: list[dict], levels) -> dict[str, float]:
    """Means per level and over levels (eval/iou_L2, …, eval/hd95_mean) by `per_level_means`."""
    names = dict(iou="iou", dice="dice", assd="assd_mm", hd95="hd95_mm")
    out = per_level_means(rows, levels, names, "eval")
    out["eval/cases"] = float(len({r["subject"] for r in rows}))
    return out


def evaluate(cfg: DictConfig) -> dict[str, float]:
    paths = checkpoint_paths(cfg.get("ckpt_path"))  # none given: the bundled models
    if cfg.centroids not in CENTROID_SOURCES:
        raise ConfigError("centroids", cfg.centroids, f"one of {', '.join(CENTROID_SOURCES)}")
    module = load_model(paths, precision=cfg.precision)
    # the preview names its network; an ensemble's full paths would run off the picture
    networks = str(paths[0]) if len(paths) == 1 else f"ensemble of {', '.join(p.name for p in paths)}"
    levels = list(cfg.levels or module.hparams.levels)
    subjects = [s for s in hydra.utils.instantiate(cfg.data.subjects) if cfg.split in (None, "all", s.split)]
    if not subjects:
        raise ConfigError("split", cfg.split, "a split that holds subjects (train, val, test or all)")
    out_dir = Path(cfg.output_dir)
    rows = []
    for subject in track(subjects, description="evaluating", disable=len(subjects) < 2):
        image, truth = subject.load()
        memo = {}  # refinement's last crops are the final ones (inference/centres.py)
        if cfg.centroids == "labels":
            centres = {VERSE_NAMES[v]: c for v, c in label_centroids(truth).items() if v in VERSE_NAMES}
        else:
            centres, _ = automatic_centres(module, image, levels, cfg.get("refine") or {}, memo=memo)
        pred = predict_levels(module, image, {lv: c for lv, c in centres.items() if lv in levels},
                              mirror_lr=bool(cfg.get("mirror_lr", False)), memo=memo)
        rows += [dict(subject=subject.id, **r) for r in score_levels(pred.label, truth, levels)]
        if cfg.get("preview", True):
            write_comparison_preview(out_dir / "previews" / f"{subject.id}_preview.png", image, truth, pred.label,
                                     levels, title=f"{subject.id} ({networks})")
    metrics = summarise(rows, levels)
    with atomic_path(out_dir / "cases.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    write_json(out_dir / "metrics.json", metrics)
    log.info("eval metrics: %s", {k: round(v, 4) for k, v in sorted(metrics.items())})
    log.info("written: %s, %s", out_dir / "metrics.json", out_dir / "cases.csv")
    return metrics
