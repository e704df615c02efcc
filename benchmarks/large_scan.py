"""Peak memory and time of predict on a large CT (default 512 x 512 x 600 voxels).

    python -m benchmarks.large_scan [--ckpt <checkpoint>] [--size 512 512 600]
        [--out benchmarks/results/large_scan.md]

The CT is a procedural phantom resampled onto a large fine grid and written uncompressed (.nii);
prediction runs in this process with the automatic localiser, as `predict.py` would (without --ckpt:
with the bundled models, as `predict.py` without ckpt_path). The report's
timings and peak RSS are printed as a table and written to --out.
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from spine_lightning.core.io import write_text
from spine_lightning.data.phantom import make_phantom
from spine_lightning.inference.predict import peak_rss_mb, predict, predict_config


def large_phantom(size, path: Path) -> None:
    image, _ = make_phantom(7)
    lo = np.array(image.GetOrigin())
    extent = np.array(image.GetSize()) * np.array(image.GetSpacing())
    spacing = extent / np.array(size)
    big = sitk.Resample(
        image,
        [int(n) for n in size],
        sitk.Transform(),
        sitk.sitkLinear,
        lo.tolist(),
        spacing.tolist(),
        image.GetDirection(),
        -1024.0,
        sitk.sitkInt16,
    )
    sitk.WriteImage(big, str(path), useCompression=False)


def predict_large(ckpt: str | None, size, **settings) -> tuple[dict, float, float]:
    """Predict on a procedural CT of `size` voxels: (report, seconds to make the CT, RSS before).
    `settings`: predict.py settings other than its defaults (e.g. precision="fp32")."""
    with tempfile.TemporaryDirectory() as tmp:
        ct = Path(tmp) / "large.nii"
        t = time.perf_counter()
        # In a child process, so that this process's peak RSS is predict's alone.
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            pool.submit(large_phantom, size, ct).result()
        make_s, rss_before = time.perf_counter() - t, peak_rss_mb()
        cfg = predict_config(ckpt_path=ckpt and str(ckpt), input=str(ct), output_dir=str(Path(tmp) / "out"), **settings)
        report = predict(cfg)[0]
        json.loads((Path(tmp) / "out" / "large_report.json").read_text())
    return report, make_s, rss_before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", help="a checkpoint (default: the bundled models)")
    parser.add_argument("--size", type=int, nargs=3, default=[512, 512, 600])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/large_scan.md"))
    args = parser.parse_args()
    report, make_s, rss_before = predict_large(args.ckpt, args.size)
    t = report["timings"]
    rows = [
        ("date", str(datetime.date.today())),
        ("networks", ", ".join(Path(c["path"]).name for c in report["checkpoints"])),
        ("precision, test-time mirroring", f"{report['settings']['precision']}, {report['settings']['mirror_lr']}"),
        ("CT size (voxels)", " x ".join(map(str, args.size))),
        ("CT file size (MB)", f"{np.prod(args.size) * 2 / 1e6:.0f} (int16, uncompressed)"),
        ("making the CT (s)", f"{make_s:.1f}"),
        ("peak RSS before predict (MB)", f"{rss_before:.0f}"),
        ("levels segmented", ", ".join(report["levels"]) or "none"),
        *((f"{k} (s)", f"{v:.1f}") for k, v in t.items()),
        ("peak RSS after predict (MB, report)", f"{report['peak_rss_mb']:.0f}"),
    ]
    table = "| quantity | value |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)
    print(table)
    write_text(args.out, "# predict on a large CT\n\n" + table + "\n")


if __name__ == "__main__":
    main()
