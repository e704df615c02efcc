"""Naming on the real lumbar CT lying at many angles: WRONG NAMES and the VerSe identification
rate of the weight-free localiser when the patient lies obliquely (forwards/backwards, sideways).

    python -m benchmarks.naming_orientations [--out benchmarks/results/naming_orientations.md]

The real 3 mm lumbar CT shipped in the package (T11-S1 in view, with its vertebra label map) is
turned by `data/oblique.py` (the scan's direction cosines, nothing interpolated) to each
(forwards, sideways) lean below; scored as in `benchmarks.naming` (S1 scored only when it lands on
another vertebra). One real spine at many angles: a check of the lean measurement and of the anchors'
safety on real anatomy, not an identification rate over many spines.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import SimpleITK as sitk

from benchmarks.naming import score
from spine_lightning.core.io import write_text
from spine_lightning.data.assets import asset_path
from spine_lightning.data.crops import label_centroids
from spine_lightning.data.labels import TOTALSEG_IDS
from spine_lightning.data.oblique import lying_obliquely
from spine_lightning.inference.localization import localize

# (forwards, sideways) degrees: forwards alone every 2-5 degrees, backwards, and both together
LEANS = [(0, 0), (3, 0), (5, 0), (6, 0), (8, 0), (9, 0), (10, 0), (11, 0), (12, 0), (13, 0), (15, 0), (17, 0),
         (20, 0), (22, 0), (-5, 0), (-8, 0), (-10, 0), (-12, 0), (-15, 0), (-20, 0), (-25, 0),
         (0, 8), (10, 5), (15, 8), (5, -8), (-10, 6)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/naming_orientations.md"))
    args = parser.parse_args(argv)
    real = asset_path("real_ct")
    image = sitk.ReadImage(str(real / "lumbar_ct_3mm.nii.gz"))
    label = sitk.ReadImage(str(real / "lumbar_ct_3mm_vertebrae.nii.gz"))
    rows = ["| forwards ° | sideways ° | turned (forwards / sideways °) | named | identified | wrong names |",
            "|---|---|---|---|---|---|"]
    totals = [0, 0, 0, 0]  # named cases, identified, scored vertebrae, wrong names
    for forwards, sideways in LEANS:
        ct, lab = lying_obliquely(image, label, float(forwards), float(sideways)) if forwards or sideways \
            else (image, label)
        truth = {TOTALSEG_IDS[v]: c for v, c in label_centroids(lab).items() if v in TOTALSEG_IDS}
        loc = localize(ct)
        identified, wrong = score(loc.centres, truth)
        scored = len(set(truth) - {"S1"})
        totals = [totals[0] + loc.named, totals[1] + len(identified), totals[2] + scored, totals[3] + wrong]
        named = ", ".join(loc.centres) if loc.named else "no: " + loc.note.split(": ", 1)[-1][:70]
        rows.append(f"| {forwards} | {sideways} | {loc.turned_upright_deg:.1f} / {loc.turned_sideways_deg:.1f} | "
                    f"{named} | {len(identified)}/{scored} | {wrong} |")
        print(rows[-1], flush=True)
    rows += ["", f"Named: {totals[0]} of {len(LEANS)} orientations; identified {totals[1]}/{totals[2]} "
                 f"({totals[1] / totals[2]:.0%}); **wrong names: {totals[3]}**. "
                 "`python -m benchmarks.naming_orientations`."]
    print(rows[-1])
    write_text(args.out, "# Naming: the real lumbar CT lying obliquely\n\n" + "\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
