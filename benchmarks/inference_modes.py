"""Inference speed and accuracy by arithmetic and memory layout, with one network: the first bundled
one (or --ckpt).

    python -m benchmarks.inference_modes [--ckpt <checkpoint>] [--out benchmarks/results/inference_modes.md]

Three tables, each measured in this one run:
- one forward pass on a 1 mm crop of the real lumbar CT: fp32 in the default layout, fp32
  channels-last-3d (how `load_segmentation_module` loads every network), bf16 autocast channels-last
  (`precision=bf16`, what `precision=auto` picks on a CPU with AVX512-BF16 or AMX); the modes
  interleaved so that drift in the machine's speed hits all alike;
- IoU per level on the two real scans never trained on (crops at the reference centroids, test-time
  mirroring, as `eval.py data=real split=val|test`), fp32 against bf16;
- `predict.py` on the large procedural CT of the benchmark suite (512 x 512 x 400 voxels), fp32
  against bf16, each twice, alternating.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time
from pathlib import Path

import torch

from spine_lightning.core.io import write_text
from spine_lightning.data.crops import crop_ct, crop_frame, label_centroids
from spine_lightning.data.intensity import window
from spine_lightning.data.labels import VERSE_NAMES
from spine_lightning.data.sources import asset_subjects
from spine_lightning.evaluation.score import score_levels
from spine_lightning.inference.checkpoints import (
    BUNDLED_MODEL,
    NET_PREFIX,
    TrainedModel,
    load_segmentation_module,
    native_bf16,
    read_checkpoint,
)
from spine_lightning.inference.segment import predict_levels, preprocessing_of

from .large_scan import predict_large

LEVELS = ["L2", "L3", "L4", "L5"]
HELD_OUT = {"verse006": "val", "tptbox": "test"}  # the real scans the bundled model never trained on


def _default_layout(ckpt: Path) -> TrainedModel:
    """The network as it was loaded until the afternoon of 2026-11-29: default (channels-first) layout, fp32."""
    data = read_checkpoint(ckpt)
    model = TrainedModel(data["hyper_parameters"])
    model.load_state_dict({k: v for k, v in data["state_dict"].items() if k.startswith(NET_PREFIX)})
    return model.eval()


def _real_subjects() -> list:
    split = {name: HELD_OUT.get(name, "train") for name in ("lumbar_ct_3mm", "verse007", "verse006", "tptbox")}
    return asset_subjects(split=split)


def forward_times(ckpt: Path, repeats: int) -> dict[str, float]:
    """Median seconds of one forward pass per mode, on a crop at the real lumbar CT's L3."""
    modes = {"fp32, default layout": _default_layout(ckpt),
             "fp32, channels-last-3d": load_segmentation_module(ckpt, precision="fp32"),
             "bf16, channels-last-3d": load_segmentation_module(ckpt, precision="bf16")}
    lumbar = next(s for s in _real_subjects() if s.id.endswith("lumbar_ct_3mm"))
    image, truth = lumbar.load()
    prep = preprocessing_of(modes["fp32, channels-last-3d"])
    centre = next(c for v, c in label_centroids(truth).items() if VERSE_NAMES.get(v) == "L3")
    hu = crop_ct(image, crop_frame(centre, prep["crop_size"], prep["spacing"]), outside="repeat")
    x = torch.from_numpy(window(hu, *prep["window_hu"]))[None, None]
    times = {name: [] for name in modes}
    with torch.no_grad():
        for model in modes.values():  # warm-up: oneDNN picks its kernels on the first call
            model(x)
        for _ in range(repeats):
            for name, model in modes.items():
                t = time.perf_counter()
                model(x)
                times[name].append(time.perf_counter() - t)
    return {name: statistics.median(ts) for name, ts in times.items()}


def held_out_iou(ckpt: Path) -> list[tuple[str, str, float, float]]:
    """(scan, level, IoU fp32, IoU bf16) on the real scans never trained on."""
    models = [load_segmentation_module(ckpt, precision=p) for p in ("fp32", "bf16")]
    rows = []
    for subject in _real_subjects():
        if subject.split == "train":
            continue
        image, truth = subject.load()
        centres = {VERSE_NAMES[v]: c for v, c in label_centroids(truth).items() if VERSE_NAMES.get(v) in LEVELS}
        scores = [score_levels(predict_levels(m, image, centres, mirror_lr=True).label, truth, LEVELS) for m in models]
        rows += [(subject.id, a["level"], a["iou"], b["iou"]) for a, b in zip(*scores, strict=True)]
    return rows


def predict_seconds(ckpt: Path, size, rounds: int) -> dict[str, list[float]]:
    """predict.py's total seconds on the large CT, fp32 and bf16 alternating."""
    out = {"fp32": [], "bf16": []}
    for _ in range(rounds):
        for precision in out:
            report, _, _ = predict_large(str(ckpt), size, precision=precision)
            out[precision].append(report["timings"]["total_s"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default=None, help="default: the first bundled network")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/inference_modes.md"))
    args = parser.parse_args()
    ckpt = Path(args.ckpt) if args.ckpt else BUNDLED_MODEL
    forward = forward_times(ckpt, args.repeats)
    base = forward["fp32, default layout"]
    iou = held_out_iou(ckpt)
    predict = predict_seconds(ckpt, (512, 512, 400), rounds=2)
    lines = [
        f"# Inference modes ({datetime.date.today()}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, native bf16: {native_bf16(torch.device('cpu'))})",
        "",
        f"`python -m benchmarks.inference_modes{' --ckpt ' + args.ckpt if args.ckpt else ''}`; weights: {ckpt.name}",
        "",
        f"One forward pass, crop {'x'.join(map(str, preprocessing_of(load_segmentation_module(ckpt))['crop_size']))} "
        f"at 1 mm, median of {args.repeats}, modes interleaved:",
        "",
        "| mode | s / forward | speed-up over fp32 default layout |",
        "|---|---|---|",
        *(f"| {name} | {s:.3f} | {base / s:.2f} |" for name, s in forward.items()),
        "",
        "IoU on the real scans never trained on (reference centroids, test-time mirroring):",
        "",
        "| scan | level | fp32 | bf16 | bf16 - fp32 |",
        "|---|---|---|---|---|",
        *(f"| {s} | {lv} | {a:.4f} | {b:.4f} | {b - a:+.4f} |" for s, lv, a, b in iou),
        "",
        "`predict.py` on the large procedural CT (512 x 512 x 400), total seconds, fp32 and bf16 alternating:",
        "",
        "| precision | runs (s) | mean (s) |",
        "|---|---|---|",
        *(f"| {p} | {', '.join(f'{t:.1f}' for t in ts)} | {statistics.mean(ts):.1f} |" for p, ts in predict.items()),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    write_text(args.out, text)


if __name__ == "__main__":
    main()
