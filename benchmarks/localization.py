"""Centroid error (mm) and identification rate of automatic localisation.

    python -m benchmarks.localization [--seeds 20] [--ckpt C | --no-ckpt] [--real spine_lightning/data/assets/real_ct]
        [--out benchmarks/results/localization.md]

Two stages are scored: the weight-free localiser alone ("coarse"), and its centres re-centred by
the segmentation network as predict does ("refined", `refine` in conf/predict.yaml; needs a
checkpoint, by default the newest default `python train.py` run under logs/).

Cases: phantoms and the real lumbar CT. The truth is each phantom's label centroids, and for the
real CT its TotalSegmentator label map (26=S1, 27=L5 ... 31=L1). Only the checkpoint's levels are
refined (the network never saw the others); the rest keep their coarse centres. With a checkpoint
the time column is that of both stages together (the refined row). A level counts as
identified when it is found and its centre is nearer to the truth centroid of its own name than to
any other vertebra's.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from spine_lightning.core.io import write_text
from spine_lightning.data.assets import asset_path
from spine_lightning.data.crops import label_centroids
from spine_lightning.data.labels import VERSE_NAMES
from spine_lightning.data.phantom import PhantomSpec, make_phantom
from spine_lightning.inference.centres import automatic_centres
from spine_lightning.inference.localization import localize

LEVELS = ("L1", "L2", "L3", "L4", "L5")
SCORED = ("L2", "L3", "L4", "L5")  # the levels the acceptance goals name
TOTALSEG_IDS = {33: "T11", 32: "T12", 31: "L1", 30: "L2", 29: "L3", 28: "L4", 27: "L5", 26: "S1"}


def score(found: dict, truth: dict) -> dict[str, float | None]:
    """Error (mm) per lumbar level; None when missing or misnamed."""
    out = {}
    for level in LEVELS:
        if level not in truth:
            continue
        centre = found.get(level)
        if centre is None:
            out[level] = None
            continue
        nearest = min(truth, key=lambda t: np.linalg.norm(np.subtract(truth[t], centre)))
        out[level] = float(np.linalg.norm(np.subtract(truth[level], centre))) if nearest == level else None
    return out


def cases(seeds: range, real: Path, spec: PhantomSpec):
    """(group, name, image, truth centroids by level name)."""
    for seed in seeds:
        image, label = make_phantom(seed, spec)
        yield "phantoms", f"phantom {seed}", image, {VERSE_NAMES[v]: c for v, c in label_centroids(label).items()}
    ct = real / "lumbar_ct_3mm.nii.gz"
    if ct.exists():
        label = sitk.ReadImage(str(real / "lumbar_ct_3mm_vertebrae.nii.gz"))
        truth = {TOTALSEG_IDS[v]: c for v, c in label_centroids(label).items() if v in TOTALSEG_IDS}
        yield "real CT", "lumbar_ct_3mm", sitk.ReadImage(str(ct)), truth


def summary(errors: list[float | None]) -> str:
    found = np.array([e for e in errors if e is not None])
    if not len(found):
        return f"identified 0/{len(errors)}"
    return (
        f"identified {len(found)}/{len(errors)}; error mean {found.mean():.2f}, 95th pct "
        f"{np.percentile(found, 95):.2f}, max {found.max():.2f} mm; <= 3 mm: {(found <= 3).sum()}/{len(errors)}, "
        f"<= 5 mm: {(found <= 5).sum()}/{len(errors)}"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=5000)
    parser.add_argument("--ckpt", help="checkpoint for the refined stage (default: newest default train run)")
    parser.add_argument("--no-ckpt", action="store_true", help="score the coarse stage only")
    parser.add_argument("--disc-mm", type=float, nargs=2, metavar=("LO", "HI"), default=PhantomSpec.disc_mm,
                        help="phantom disc height range (default: the training phantoms')")
    parser.add_argument("--real", type=Path, default=asset_path("real_ct"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/localization.md"))
    args = parser.parse_args(argv)

    module, refine = None, None
    if not args.no_ckpt:
        from benchmarks.run import newest_default_checkpoint
        from spine_lightning.inference.checkpoints import load_segmentation_module
        from spine_lightning.inference.predict import predict_config

        ckpt = args.ckpt or newest_default_checkpoint()
        if ckpt:
            module, refine = load_segmentation_module(ckpt), predict_config().refine
    stages = ("coarse", "refined") if module is not None else ("coarse",)

    lines = [
        "| case | stage | " + " | ".join(f"{lv} (mm)" for lv in LEVELS) + " | time (s) |",
        "|---" * (len(LEVELS) + 3) + "|",
    ]
    totals: dict[tuple[str, str], list] = {}
    seeds, spec = range(args.first_seed, args.first_seed + args.seeds), PhantomSpec(disc_mm=tuple(args.disc_mm))
    for group, name, image, truth in cases(seeds, args.real, spec):
        t = time.perf_counter()
        if module is None:
            found = {"coarse": (localize(image).centres, time.perf_counter() - t)}
        else:  # exactly predict's stage; the coarse centres come from its report
            centres, report = automatic_centres(module, image, module.hparams.levels, refine)
            coarse = {lv: tuple(c) for lv, c in report["centres_mm"].items()}
            found = {"coarse": (coarse, None), "refined": ({**coarse, **centres}, time.perf_counter() - t)}
        for stage in stages:
            centres, seconds = found[stage]
            errors = score(centres, truth)
            cells = ["-" if lv not in errors else ("missed/misnamed" if errors[lv] is None else f"{errors[lv]:.1f}")
                     for lv in LEVELS]
            timing = "-" if seconds is None else f"{seconds:.1f}"
            lines.append(f"| {group}: {name} | {stage} | " + " | ".join(cells) + f" | {timing} |")
            totals.setdefault((group, stage), []).extend(errors.get(lv) for lv in SCORED if lv in errors)
    lines += ["", "L2-L5:", ""] + [f"- {group}, {stage}: {summary(errs)}" for (group, stage), errs in totals.items()]
    if module is not None:
        lines += ["", f"refined with `{ckpt}` ({refine.iterations} iterations, max shift {refine.max_shift_mm} mm)"]
    table = "\n".join(lines)
    print(table)
    write_text(args.out, "# Automatic localisation: centroid error\n\n" + table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
