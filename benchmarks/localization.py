"""Centroid error (mm) and identification rate of the weight-free localiser.

    python -m benchmarks.localization [--seeds 20] [--real tests/data/real_ct]
        [--out benchmarks/results/localization.md]

Phantoms: the truth is each phantom's label centroids. Real CT: the TotalSegmentator label map
(26=S1, 27=L5 ... 31=L1). A level counts as identified when it is found and its centre is nearer
to the truth centroid of its own name than to any other vertebra's.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from spine_lightning.data.crops import label_centroids
from spine_lightning.data.labels import VERSE_NAMES
from spine_lightning.data.phantom import make_phantom
from spine_lightning.localization import localize

LEVELS = ("L1", "L2", "L3", "L4", "L5")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=5000)
    parser.add_argument("--real", type=Path, default=Path("tests/data/real_ct"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/localization.md"))
    args = parser.parse_args()

    cases = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        image, label = make_phantom(seed)
        cases.append(
            (f"phantom {seed}", image, {VERSE_NAMES[v]: c for v, c in label_centroids(label).items()})
        )
    ct = args.real / "lumbar_ct_3mm.nii.gz"
    if ct.exists():
        label = sitk.ReadImage(str(args.real / "lumbar_ct_3mm_vertebrae.nii.gz"))
        truth = {TOTALSEG_IDS[v]: c for v, c in label_centroids(label).items() if v in TOTALSEG_IDS}
        cases.append(("real lumbar_ct_3mm", sitk.ReadImage(str(ct)), truth))

    lines = [
        "| case | " + " | ".join(f"{lv} (mm)" for lv in LEVELS) + " | time (s) |",
        "|---" * (len(LEVELS) + 2) + "|",
    ]
    phantom_errors, phantom_ok, phantom_total = [], 0, 0
    for name, image, truth in cases:
        t = time.perf_counter()
        errors = score(localize(image).centres, truth)
        seconds = time.perf_counter() - t
        cells = [
            "missed/misnamed"
            if errors.get(lv, 0) is None
            else ("-" if lv not in errors else f"{errors[lv]:.1f}")
            for lv in LEVELS
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {seconds:.1f} |")
        if name.startswith("phantom"):
            for lv in ("L2", "L3", "L4", "L5"):
                phantom_total += 1
                if errors.get(lv) is not None:
                    phantom_ok += 1
                    phantom_errors.append(errors[lv])
    e = np.array(phantom_errors)
    lines += [
        "",
        f"Phantoms, L2-L5: identified {phantom_ok}/{phantom_total}; centroid error mean {e.mean():.2f} mm, "
        f"median {np.median(e):.2f} mm, 95th percentile {np.percentile(e, 95):.2f} mm, max {e.max():.2f} mm, "
        f"<= 3 mm: {(e <= 3).mean():.0%}",
    ]
    table = "\n".join(lines)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("# Weight-free localiser: centroid error\n\n" + table + "\n")


if __name__ == "__main__":
    main()
