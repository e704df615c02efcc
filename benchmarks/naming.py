"""Naming benchmark: VerSe identification rate, mean distance and WRONG NAMES of the weight-free
localiser, and of the count of the network's vertebrae where it names nothing, over phantoms
cropped to random fields of view (with discs of real height, 4-10 mm, and with the thin discs of
the training phantoms, 1.8-3.5 mm), transitional spines, the real CTs (also cropped so that the
scan begins inside the sacrum), and a CT without a spine.

    python -m benchmarks.naming [--seeds 3] [--real DIR] [--verse DIR] [--ckpt [CKPT ...]]
                                [--out benchmarks/results/naming.md]

(--real, --verse: default the real CTs shipped in spine_lightning/data/assets/.)

A vertebra is identified (VerSe) when a centre was named for it, that centre is nearer to its truth
centroid than to any other vertebra's, and within 20 mm. A wrong name: a name whose centre is not
identified as that vertebra. The sacrum (S1) is not scored (VerSe does not; its labels span the
whole sacrum, whose centroid lies far below S1's body), except that an S1 within 20 mm of another
vertebra's centroid (a sixth lumbar vertebra taken for the sacrum) is a wrong name. Two
identification rates: over the vertebrae wholly in view (VerSe's data count the fully visualised
vertebrae), and over every vertebra with a voxel in the scan, slivers cut by a crop's edge
included. Scored: the weight-free stage alone, and with the network's count where it named nothing
(`refine.network_count` of predict and eval); the refined stage moves centres, never names.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from spine_lightning.core.io import write_text
from spine_lightning.data.assets import asset_path
from spine_lightning.data.crops import label_centroids
from spine_lightning.data.labels import TOTALSEG_IDS, VERSE_NAMES
from spine_lightning.data.oblique import lying_obliquely
from spine_lightning.data.phantom import PhantomSpec, make_phantom
from spine_lightning.data.scan import as_scan
from spine_lightning.inference.centres import counted_by_the_network
from spine_lightning.inference.checkpoints import checkpoint_paths, load_model
from spine_lightning.inference.localization import localize
from spine_lightning.inference.localization.pipeline import BY_THE_NETWORK


def score(centres: dict, truth: dict) -> tuple[dict[str, float], int]:
    """({name: distance} of the identified vertebrae, wrong names)."""
    identified, wrong = {}, 0
    truth = {k: v for k, v in truth.items() if k != "S1"}  # as in VerSe: the sacrum is not scored...
    # ... but an S1 placed on another vertebra (a sixth lumbar taken for the sacrum) is a wrong name
    if "S1" in centres and truth and min(np.linalg.norm(np.subtract(c, centres["S1"])) for c in truth.values()) <= 20.0:
        wrong += 1
    for name, centre in ((k, v) for k, v in centres.items() if k != "S1"):
        if name not in truth:
            wrong += 1
            continue
        nearest = min(truth, key=lambda t: np.linalg.norm(np.subtract(truth[t], centre)))
        d = float(np.linalg.norm(np.subtract(truth[name], centre)))
        if nearest == name and d <= 20.0:
            identified[name] = d
        else:
            wrong += 1
    return identified, wrong


def cut_by_the_edge(label: sitk.Image) -> set[int]:
    """Label values with a voxel on a face of the scan: vertebrae not wholly in view."""
    arr = sitk.GetArrayViewFromImage(label)
    faces = (arr[0], arr[-1], arr[:, 0], arr[:, -1], arr[:, :, 0], arr[:, :, -1])
    return {int(v) for face in faces for v in np.unique(face) if v}



def _crop(image, label, z0, z1):
    return image[:, :, z0:z1], label[:, :, z0:z1]


# Phantom groups by disc height: real lumbar discs are 4-12 mm (thinner when degenerated); the
# training phantoms' 1.8-3.5 mm discs, one or two slices at 2.5 mm, are the hard case.
DISC_GROUPS = {"discs 4-10 mm": (4.0, 10.0), "thin discs": PhantomSpec().disc_mm}
ANCHORED = ("whole", "crop (no sacrum)", "crop (no thoracic)")  # a normal spine with an anchor in view
# the whole spine of a patient lying obliquely: (forwards, sideways) lean in degrees
OBLIQUE = {"leaning 15° forwards": (15.0, 0.0), "leaning 15° forwards, 8° sideways": (15.0, 8.0)}


def cases(seeds, real: Path, verse: Path):
    rng = np.random.default_rng(12)
    for seed in seeds:
        for group, disc_mm in DISC_GROUPS.items():
            image, label = make_phantom(seed, PhantomSpec(disc_mm=disc_mm))
            n = image.GetSize()[2]
            yield f"phantom, {group}: whole", seed, image, label, VERSE_NAMES
            for what in ("no sacrum", "no thoracic", "neither"):
                lo = int(rng.uniform(0.25, 0.4) * n) if what != "no thoracic" else 0
                hi = int(rng.uniform(0.6, 0.75) * n) if what != "no sacrum" else n
                yield f"phantom, {group}: crop ({what})", seed, *_crop(image, label, lo, hi), VERSE_NAMES
            for what, degrees in OBLIQUE.items():
                yield f"phantom, {group}: {what}", seed, *lying_obliquely(image, label, *degrees), VERSE_NAMES
        yield "phantom L6", seed, *make_phantom(seed, PhantomSpec(transitional="L6")), VERSE_NAMES
        yield "phantom rib on L1", seed, *make_phantom(seed, PhantomSpec(transitional="rib_L1")), VERSE_NAMES
        yield "phantom without ribs", seed, *make_phantom(seed, PhantomSpec(ribs=False)), VERSE_NAMES
    ct = real / "lumbar_ct_3mm.nii.gz"
    if ct.exists():
        image, label = sitk.ReadImage(str(ct)), sitk.ReadImage(str(real / "lumbar_ct_3mm_vertebrae.nii.gz"))
        yield "real lumbar CT 3 mm", "", image, label, TOTALSEG_IDS
        for what, degrees in OBLIQUE.items():
            yield f"real lumbar CT 3 mm, {what}", "", *lying_obliquely(image, label, *degrees), TOTALSEG_IDS
        arr = sitk.GetArrayViewFromImage(label)
        l1_top = max(z for z in range(arr.shape[0]) if (arr[z] == 31).any())
        yield "real lumbar CT, above L1 (T12-T11)", "", *_crop(image, label, l1_top + 1, arr.shape[0]), TOTALSEG_IDS
        s1_top = max(z for z in range(arr.shape[0]) if (arr[z] == 26).any())
        yield "real lumbar CT, above S1 (L5-T11)", "", *_crop(image, label, s1_top + 1, arr.shape[0]), TOTALSEG_IDS
        # the scan begins inside S1, its body cut: the L5 above, wide and between the iliac crests,
        # was read as the sacrum until 2026-11-30, and every name was a level too low
        l5_bottom = min(z for z in range(arr.shape[0]) if (arr[z] == 27).any())
        for mm in (9, 15, 24):
            k = l5_bottom - int(round(mm / label.GetSpacing()[2]))
            yield (f"real lumbar CT, scan beginning {mm} mm below L5 (S1 cut)", "",
                   *_crop(image, label, k, arr.shape[0]), TOTALSEG_IDS)
    for case in ("sub-verse007", "sub-verse006", "sub-tptbox"):
        if (verse / f"{case}_ct.nii.gz").exists():
            yield (
                f"VerSe {case}",
                "",
                sitk.ReadImage(str(verse / f"{case}_ct.nii.gz")),
                sitk.ReadImage(str(verse / f"{case}_seg-vert_msk.nii.gz")),
                VERSE_NAMES,
            )
    body = sitk.GetImageFromArray(np.full((80, 120, 120), 40, np.int16))
    body.SetSpacing((2.0, 2.0, 2.5))
    yield "CT without a spine", "", body, body * 0, VERSE_NAMES


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=5000)
    parser.add_argument("--real", type=Path, default=asset_path("real_ct"))
    parser.add_argument("--verse", type=Path, default=asset_path("verse"))
    parser.add_argument("--ckpt", nargs="*", default=None,
                        help="network(s) that count the vertebrae where the weight-free stage names nothing "
                        "(default: the bundled ensemble, as predict); with no value: the weight-free stage only")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/naming.md"))
    args = parser.parse_args(argv)
    module = None if args.ckpt == [] else load_model(checkpoint_paths(args.ckpt), precision="auto")
    stages = ("weight-free", "with the network's count") if module is not None else ("weight-free",)
    rows = [
        "| case | seed | named | by | anchor | identified: wholly in view | all, cut ones too | mean distance (mm) "
        "| wrong names | network count (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    total_wrong = dict.fromkeys(stages, 0)
    anchored = {(st, g, w): np.zeros(4, int) for st in stages for g in DISC_GROUPS for w in ("upright", *OBLIQUE)}
    for group, seed, image, label, ids in cases(
        range(args.first_seed, args.first_seed + args.seeds), args.real, args.verse
    ):
        truth = {ids[v]: c for v, c in label_centroids(label).items() if v in ids}
        whole = {n for n in truth if n != "S1"} - {ids[v] for v in cut_by_the_edge(label) if v in ids}
        scan = as_scan(image)
        found = {"weight-free": localize(scan)}
        seconds = "-"
        if module is not None:
            t = time.perf_counter()
            first = found["weight-free"]
            found[stages[1]] = first if first.named else counted_by_the_network(module, scan, replace(first), None)
            seconds = "-" if first.named else f"{time.perf_counter() - t:.0f}"
        for stage, loc in found.items():
            identified, wrong = score(loc.centres, truth)
            total_wrong[stage] += wrong
            counts = np.array([len(whole & set(identified)), len(whole), len(identified), len(set(truth) - {"S1"})])
            for g in DISC_GROUPS:
                if group in (f"phantom, {g}: {what}" for what in ANCHORED):
                    anchored[stage, g, "upright"] += counts
                if group.startswith(f"phantom, {g}: leaning"):
                    anchored[stage, g, group.split(": ", 1)[1]] += counts
        named = "yes" if loc.named else "no: " + loc.note.split(": ", 1)[-1][:60]
        by = ("-" if not loc.named else "network count" if loc.body_detector == BY_THE_NETWORK else "weight-free")
        distance = f"{np.mean(list(identified.values())):.1f}" if identified else "-"
        rows.append(f"| {group} | {seed} | {named} | {by} | {loc.anchor or '-'} | {counts[0]}/{counts[1]} | "
                    f"{counts[2]}/{counts[3]} | {distance} | {wrong} | {seconds} |")
        print(rows[-1], flush=True)
    networks = ", ".join(f"`{p.name}`" for p in checkpoint_paths(args.ckpt)) if module is not None else ""
    summary = [
        "",
        "Wrong names in all: " + ", ".join(f"{st} {n}" for st, n in total_wrong.items()) + ". Identification "
        "rate of the normal phantom spines with an anchor in view (upright: whole, crop without sacrum, crop "
        "without thoracic spine; and the whole spine leaning), over the vertebrae wholly in view and over all "
        "with the cut ones:",
        "",
        "| names from | phantoms | wholly in view | with the cut ones |",
        "|---|---|---|---|",
        *(f"| {st} | {g}, {w} | {a}/{b} = {a / max(b, 1):.0%} | {c}/{d} = {c / max(d, 1):.0%} |"
          for (st, g, w), (a, b, c, d) in anchored.items()),
        "",
        "The table above is the final stage: the weight-free stage's names, or where it named nothing, the "
        "count of the vertebrae the network finds along the column (`refine.network_count`, "
        f"inference/vertebra_votes.py; {networks or 'not run'}); the refined stage moves centres, never names. "
        "`python -m benchmarks.naming`" + ("" if module else " --ckpt") + " (`--ckpt` with no value: the "
        "weight-free stage only).",
    ]
    rows += summary
    print("\n".join(summary))
    write_text(args.out, "# Automatic localisation: naming\n\n" + "\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
