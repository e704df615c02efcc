"""Preprocessing benchmarks: crop-only vs whole-CT resampling, and RAM against dataset size.

    python benchmarks/preprocessing.py                 # full: 512x512x400 CT, 10 and 200 phantoms
    python benchmarks/preprocessing.py --subjects 10 50

Prints a table and writes it to benchmarks/results_preprocessing.md. The functions return the
numbers so that a benchmark suite can call them.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from spine_lightning.data.crops import AIR_HU, crop_pair  # noqa: E402

CROP = (96, 112, 64)  # the paper's crop, voxels at 1 mm


def synthetic_ct(size=(512, 512, 400), spacing=(0.7, 0.7, 1.0), levels: int = 4, seed: int = 0):
    """A CT-sized int16 volume (noise around soft tissue) on an oblique, LPS-flipped grid, its label
    map with one 40 mm ball per level, and the balls' physical centres."""
    rng = np.random.default_rng(seed)
    arr = rng.normal(40, 300, size[::-1]).astype(np.int16)
    image = sitk.GetImageFromArray(arr)
    image.SetSpacing(spacing)
    rot = np.asarray(sitk.VersorTransform((0.1, 0.2, 1.0), 0.15).GetMatrix()).reshape(3, 3)
    image.SetDirection(tuple((rot @ np.diag([-1.0, -1.0, 1.0])).ravel()))
    label_arr = np.zeros(size[::-1], np.uint8)
    z, y, x = np.ogrid[: size[2], : size[1], : size[0]]
    centres = []
    for i in range(levels):
        cz, cy, cx = size[2] * (i + 1) // (levels + 1), size[1] // 2, size[0] // 2
        dist2 = ((x - cx) * spacing[0]) ** 2 + ((y - cy) * spacing[1]) ** 2 + ((z - cz) * spacing[2]) ** 2
        ball = dist2 < 20**2
        label_arr[ball] = 21 + i
        centres.append(image.TransformIndexToPhysicalPoint((cx, cy, cz)))
    label = sitk.GetImageFromArray(label_arr)
    label.CopyInformation(image)
    return image, label, centres


def whole_then_crop(image, label, centres, spacing_mm: float = 1.0):
    """The slow way: resample the whole CT to 1 mm in the canonical frame, then cut the crops out."""
    size_in = image.GetSize()
    corners = [image.TransformIndexToPhysicalPoint([c * (n - 1) for c, n in zip(k, size_in, strict=True)])
               for k in np.ndindex(2, 2, 2)]
    lo, hi = np.min(corners, axis=0), np.max(corners, axis=0)
    size = [int(np.ceil((h - low) / spacing_mm)) + 1 for low, h in zip(lo, hi, strict=True)]
    grid = (size, sitk.Transform())
    frame = (tuple(lo), (spacing_mm,) * 3, tuple(np.eye(3).ravel()))
    ct = sitk.Resample(image, *grid, sitk.sitkLinear, *frame, AIR_HU, sitk.sitkFloat32)
    lab = sitk.Resample(label, *grid, sitk.sitkNearestNeighbor, *frame, 0, label.GetPixelID())
    ct_arr, lab_arr = sitk.GetArrayViewFromImage(ct), sitk.GetArrayViewFromImage(lab)
    crops = []
    for centre in centres:
        index = np.round((np.asarray(centre) - lo) / spacing_mm).astype(int)[::-1]  # z, y, x
        half = np.asarray(CROP[::-1]) // 2
        sl = tuple(slice(max(0, i - h), i - h + n) for i, h, n in zip(index, half, CROP[::-1], strict=True))
        crops.append((ct_arr[sl].copy(), lab_arr[sl].copy()))
    return crops


def crop_only(image, label, centres, spacing_mm: float = 1.0):
    return [crop_pair(image, label, c, CROP, spacing_mm)[:2] for c in centres]


def resampling_speed(size=(512, 512, 400), repeats: int = 3) -> dict:
    """Best-of-`repeats` seconds for four crops: crop-only resampling vs whole-CT resampling."""
    image, label, centres = synthetic_ct(size)
    times = {}
    for name, fn in (("crop_only", crop_only), ("whole_then_crop", whole_then_crop)):
        best = np.inf
        for _ in range(repeats):
            start = time.perf_counter()
            fn(image, label, centres)
            best = min(best, time.perf_counter() - start)
        times[name] = best
    return dict(ct_size=list(size), crops=len(centres), crop_only_s=times["crop_only"],
                whole_then_crop_s=times["whole_then_crop"],
                speedup=times["whole_then_crop"] / times["crop_only"])


def _peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _measure_preprocessing_ram(num_subjects: int, cache_dir: str, workers: int) -> dict:
    """Run in a fresh process: fill the cache for `num_subjects` phantoms, then load them for
    training and read every crop once; peak RSS of this process and of its worker processes."""
    from spine_lightning.data.datamodule import SpineDataModule
    from spine_lightning.data.sources import phantom_subjects

    # Linux carries a parent's peak RSS into a forked child: reset the high-water mark first.
    Path("/proc/self/clear_refs").write_text("5")

    subjects = phantom_subjects(num_subjects - 2, 1, 1, seed=7, spacing=(1.6, 1.6, 3.0))
    dm = SpineDataModule(subjects, crop_size=CROP, preprocess_workers=workers, cache_dir=cache_dir,
                         flip_lr=False)
    start = time.perf_counter()
    written = dm.fill_cache()
    fill_s = time.perf_counter() - start
    after_fill = _peak_rss_mib()
    dm.setup()
    dataset = dm.train_dataloader().dataset
    for i in range(len(dataset)):
        dataset[i]
    return dict(subjects=num_subjects, entries_written=written, crops=sum(len(v) for v in dm.crops.values()),
                fill_s=fill_s, main_peak_mib_after_fill=after_fill,
                main_peak_mib_after_training_pass=_peak_rss_mib(),
                worker_peak_mib=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)


def preprocessing_ram(num_subjects: int, workers: int = 2) -> dict:
    with tempfile.TemporaryDirectory() as cache_dir:
        code = (f"import json, benchmarks.preprocessing as b; "
                f"print(json.dumps(b._measure_preprocessing_ram({num_subjects}, {cache_dir!r}, {workers})))")
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                             check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ct-size", type=int, nargs=3, default=[512, 512, 400])
    parser.add_argument("--subjects", type=int, nargs="+", default=[10, 200])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results_preprocessing.md"))
    args = parser.parse_args(argv)

    ram = [preprocessing_ram(n, args.workers) for n in args.subjects]  # first: a light parent process
    speed = resampling_speed(tuple(args.ct_size))
    lines = [
        "# Preprocessing benchmark",
        "",
        f"`python benchmarks/preprocessing.py {' '.join(argv or sys.argv[1:])}`".replace(" `", "`"),
        f"on {platform.machine()}, {platform.python_version()}, SimpleITK {sitk.Version.VersionString()}, "
        f"{sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()} ITK threads.",
        "",
        f"## Four {CROP[0]}x{CROP[1]}x{CROP[2]} crops at 1 mm from a {'x'.join(map(str, speed['ct_size']))} "
        "oblique CT (best of 3)",
        "",
        "| method | seconds |",
        "|---|---|",
        f"| crop-only resampling (`crops.crop_pair`) | {speed['crop_only_s']:.3f} |",
        f"| whole CT to 1 mm, then crop | {speed['whole_then_crop_s']:.3f} |",
        f"| speed-up | {speed['speedup']:.1f}x |",
        "",
        f"## Preprocessing RAM against dataset size (phantoms, {args.workers} workers, cache on disk)",
        "",
        "| subjects | crops | fill s | main peak MiB (fill) | main peak MiB (+ one training pass) "
        "| worker peak MiB |",
        "|---|---|---|---|---|---|",
        *(f"| {r['subjects']} | {r['crops']} | {r['fill_s']:.1f} | {r['main_peak_mib_after_fill']:.0f} | "
          f"{r['main_peak_mib_after_training_pass']:.0f} | {r['worker_peak_mib']:.0f} |" for r in ram),
        "",
    ]
    table = "\n".join(lines)
    print(table)
    Path(args.out).write_text(table)
    return table


if __name__ == "__main__":
    main()
