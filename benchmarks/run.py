"""Benchmark suite: `python benchmarks/run.py [--quick] [--out FILE.json]`.

Prints a table of ratios measured side by side in one run and writes them as JSON; a full run
also writes `benchmarks/results.md` with the machine and the date.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks import loader, pipeline, training_steps  # noqa: E402

# key: (target, "<=" or ">=", quick target)
TARGETS = {
    "adv_over_baseline_step": (2.1, "<=", 2.2),
    "cpu_channels_last_speedup": (1.0, ">=", None),  # the default layout must not be the slower one
    "crop_only_speedup": (10.0, ">=", 10.0),
    "crop_over_read": (1.5, "<=", 1.5),
    "fcn_over_vnet_step": (1.0, "<=", None),
    "loader_headroom": (20.0, ">=", 20.0),
    "predict_seconds": (10.0, "<=", 10.0),
    "predict_peak_rss_gb": (4.0, "<=", 4.0),
    "preprocess_time_per_subject_ratio": (1.5, "<=", 1.5),
    "preprocess_rss_ratio": (1.2, "<=", 1.2),
}


def suite(quick: bool, tiny: bool, ckpt: str | None = None) -> dict:
    """Every benchmark; sizes shrink with --quick (and further with --tiny, for the smoke test)."""
    if tiny:
        # 32 voxels along Z: at 16, oneDNN's bf16 backward of the 1 x 2 x 2 deepest level hung at random
        # on an AMD EPYC CPU (2026-11-29), in the cpu_modes benchmark
        crop, zyx, spacing = (32, 32, 16), (32, 32, 32), 3.0
        ct, counts = (128, 128, 100), (3, 6)
    elif quick:
        crop, zyx, spacing = (48, 64, 32), (32, 64, 48), 2.0
        ct, counts = (512, 512, 400), (10, 50)
    else:
        crop, zyx, spacing = (96, 112, 64), (64, 112, 96), 1.0
        ct, counts = (512, 512, 400), (10, 50, 200, 1000)
    results = {}
    results.update(training_steps.adversarial_over_baseline(zyx, repeats=2 if tiny else 5 if quick else 9))
    results.update(training_steps.cpu_modes(zyx, repeats=1 if tiny else 3))
    results.update(training_steps.fcn_over_vnet((32, 32, 32) if tiny else zyx, repeats=1 if tiny else 3))
    results.update(loader.loader_headroom(crop, spacing, subjects=1 if tiny else 3, steps=2 if tiny else 8))
    results.update(pipeline.crop_only(ct))
    results.update(pipeline.preprocess_scaling(counts))
    results.update(pipeline.predict_latency(ct, ckpt))
    results.update(training_steps.gpu_modes(zyx))
    return results


def newest_default_checkpoint() -> str | None:
    """The last.ckpt of the newest `python train.py` run with the default CPU model, else the
    first bundled network: an untrained model predicts blobs that fill whole crops, which
    times mesh export, not predict."""
    from spine_lightning.inference.checkpoints import BUNDLED_MODEL, load_segmentation_module

    for path in sorted((ROOT / "logs" / "train" / "runs").glob("*/checkpoints/last.ckpt"), reverse=True):
        net = load_segmentation_module(path).hparams.net
        if {k: net.get(k) for k in training_steps.CPU_NET} == training_steps.CPU_NET:
            return str(path)
    return str(BUNDLED_MODEL) if BUNDLED_MODEL.is_file() else None


def verdicts(results: dict, quick: bool) -> dict:
    out = {}
    for key, (full, op, quick_target) in TARGETS.items():
        target = quick_target if quick else full
        value = results.get(key)
        if value is None or target is None:
            out[key] = "n/a" if value is None else "reported"
            continue
        ok = value <= target if op == "<=" else value >= target
        out[key] = f"{'meets' if ok else 'MISSES'} {op} {target}"
    return out


def table(results: dict, verdict: dict) -> str:
    rows = ["| key | value | target |", "|---|---|---|"]
    for key, value in results.items():
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        rows.append(f"| {key} | {shown} | {verdict.get(key, '')} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a few minutes on a 2-core CPU")
    parser.add_argument("--tiny", action="store_true", help="smallest sizes (smoke test only; implies --quick)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument(
        "--ckpt",
        help="checkpoint for the predict benchmark (default: the newest default run, else the first bundled network)",
    )
    args = parser.parse_args(argv)
    quick = args.quick or args.tiny
    ckpt = args.ckpt or (None if args.tiny else newest_default_checkpoint())
    print(f"predict benchmark weights: {ckpt or 'untrained default model'}")
    results = suite(quick, args.tiny, ckpt)
    results["predict_weights"] = ckpt or "untrained"
    verdict = verdicts(results, quick)
    text = table(results, verdict)
    print(text)
    meta = dict(
        date=datetime.date.today().isoformat(),
        machine=f"{platform.machine()}, {platform.processor() or ''} {torch.get_num_threads()} threads",
        torch=torch.__version__,
        quick=quick,
        command="python benchmarks/run.py" + (" --quick" if args.quick else "") + (" --tiny" if args.tiny else ""),
    )
    if args.out:
        from spine_lightning.core.io import write_json

        write_json(args.out, dict(results=results, verdicts=verdict, meta=meta))
    if not quick:
        head = f"{meta['date']}, {meta['machine']}, torch {meta['torch']}"
        md = f"# Benchmark results\n\n{head}\n\n`{meta['command']}`\n\n{text}\n"
        (ROOT / "benchmarks" / "results.md").write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
