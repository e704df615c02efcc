"""Segmentation of vertebrae left unnamed: one label per vertebra, with and without the network's
check of the count (`refine.one_per_vertebra`, inference/centres.py).

    python -m benchmarks.unnamed [--seeds 2] [--first-seed 5000] [--ckpt C] [--out benchmarks/results/unnamed.md]

Cases: those of `benchmarks.naming` (phantoms whole, cropped and lying obliquely, transitional
spines, the real CTs and their crops, the VerSe scans) that the weight-free localiser leaves
unnamed; predict then segments every body it found as 'vertebra1', 'vertebra2', ... A vertebra
wholly in view (the sacrum aside, whose label spans all of it) **has its own label** when the
predicted label overlapping it most has Dice >= 0.5 with it and is no other vertebra's best label.
A predicted label is **spurious** when under 20 % of its voxels lie on any labelled vertebra. The
network is the bundled ensemble (as predict.py) unless --ckpt is given; no test-time mirroring (it
does not change which vertebrae are found). The network's count (`refine.network_count`), which
may name such bodies, is off here: this measures the step alone.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from benchmarks.naming import cases, cut_by_the_edge
from spine_lightning.core.io import write_text
from spine_lightning.data.assets import asset_path
from spine_lightning.inference.centres import automatic_centres
from spine_lightning.inference.checkpoints import checkpoint_paths, load_model
from spine_lightning.inference.localization import localize
from spine_lightning.inference.predict import predict_config
from spine_lightning.inference.segment import predict_levels

OWN_LABEL_DICE = 0.5
SPURIOUS_ON_BONE = 0.2


def own_labels_and_spurious(pred: np.ndarray, reference: np.ndarray, scored: set[int]) -> tuple[int, int]:
    """(vertebrae in `scored` with a label of their own, predicted labels on no labelled vertebra)."""
    best = {}
    for value in scored:
        inside = reference == value
        dice = {p: 2 * (inside & (pred == p)).sum() / (inside.sum() + (pred == p).sum())
                for p in np.unique(pred[inside]) if p}
        if dice:
            best[value] = max(dice.items(), key=lambda kv: kv[1])
    claimed = [p for p, _ in best.values()]
    own = sum(d >= OWN_LABEL_DICE and claimed.count(p) == 1 for p, d in best.values())
    spurious = sum((reference[pred == p] > 0).mean() < SPURIOUS_ON_BONE for p in np.unique(pred) if p)
    return own, spurious


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--first-seed", type=int, default=5000)
    parser.add_argument("--ckpt", default=None, help="checkpoint (default: the bundled models, as predict.py)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/unnamed.md"))
    args = parser.parse_args(argv)
    paths = checkpoint_paths(args.ckpt)
    module = load_model(paths)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    lines = ["| case | seed | vertebrae in view | own label: off / on | spurious: off / on | added | dropped "
             "| time on (s) |", "|---|---|---|---|---|---|---|---|"]
    totals = np.zeros(6, int)
    for name, seed, image, label, names in cases(seeds, asset_path("real_ct"), asset_path("verse")):
        if localize(image).named:
            continue
        reference = sitk.GetArrayFromImage(label)
        sacrum = {v for v, n in names.items() if n == "S1"}
        scored = {int(v) for v in np.unique(reference) if v and int(v) in names} - sacrum - cut_by_the_edge(label)
        row = []
        for on in (False, True):
            # the step alone, on bodies left unnamed: the network's count, which may name them, is off
            refine = dict(predict_config().refine, one_per_vertebra=on, network_count=False)
            t = time.perf_counter()
            centres, report = automatic_centres(module, image, module.hparams.levels, refine)
            pred = sitk.GetArrayFromImage(predict_levels(module, image, centres).label)
            row.append((*own_labels_and_spurious(pred, reference, scored), time.perf_counter() - t, report))
        (own_off, spur_off, _, _), (own_on, spur_on, seconds, report) = row
        added, dropped = len(report["vertebrae_added"]), len(report["centres_dropped_mm"])
        totals += [len(scored), own_off, own_on, spur_off, spur_on, added]
        lines.append(f"| {name} | {seed} | {len(scored)} | {own_off} / {own_on} | {spur_off} / {spur_on} | {added} | "
                     f"{dropped} | {seconds:.1f} |")
    n, own_off, own_on, spur_off, spur_on, added = totals.tolist()
    lines += ["", f"Unnamed cases: {len(lines) - 2}; vertebrae wholly in view with a label of their own: "
              f"{own_off}/{n} without the check, **{own_on}/{n}** with it; spurious labels {spur_off} -> "
              f"{spur_on}; vertebrae added {added}.", "", f"Networks: `{', '.join(p.name for p in paths)}`, seeds "
              f"{seeds.start}-{seeds.stop - 1}."]
    table = "\n".join(lines)
    print(table)
    write_text(args.out, "# Vertebrae left unnamed: one label per vertebra\n\n" + table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
