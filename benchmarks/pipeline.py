"""Preprocessing and prediction benchmarks of the suite, built on the stand-alone scripts."""

from __future__ import annotations

import multiprocessing
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import SimpleITK as sitk
import torch

from spine_lightning.training.module import SpineSegmentationModule

from . import large_scan, preprocessing
from .training_steps import CPU_NET


def crop_only(size) -> dict:
    """Four-level preprocessing of one CT: whole-volume resampling then cropping / crop-only; and
    crop-only preprocessing (read + crops) / reading the file alone."""
    speed = preprocessing.resampling_speed(size)
    image, label, centres = preprocessing.synthetic_ct(size)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ct.nii.gz"
        sitk.WriteImage(image, str(path), useCompression=True)
        t = time.perf_counter()
        read = sitk.ReadImage(str(path))
        read_s = time.perf_counter() - t
        t = time.perf_counter()
        preprocessing.crop_only(read, label, centres)
        crops_s = time.perf_counter() - t
    return dict(crop_only_speedup=speed["speedup"], whole_then_crop_s=speed["whole_then_crop_s"],
                crop_only_s=speed["crop_only_s"], crop_over_read=(read_s + crops_s) / read_s, read_s=read_s)


def preprocess_scaling(counts) -> dict:
    """Time and peak RSS of filling the cache and one training pass, against the number of subjects."""
    rows = {n: preprocessing.preprocessing_ram(n) for n in counts}
    first, last = rows[counts[0]], rows[counts[-1]]
    out = {f"preprocess_{n}_s": r["fill_s"] for n, r in rows.items()}
    out.update({f"preprocess_{n}_peak_mib": r["main_peak_mib_after_training_pass"] for n, r in rows.items()})
    # linear time: seconds per subject stays put; flat RAM: peak RSS does not grow with the count
    out["preprocess_time_per_subject_ratio"] = (last["fill_s"] / counts[-1]) / (first["fill_s"] / counts[0])
    out["preprocess_rss_ratio"] = (last["main_peak_mib_after_training_pass"]
                                   / first["main_peak_mib_after_training_pass"])
    return out


def predict_latency(size, ckpt: str | None = None) -> dict:
    """predict.py on a procedural CT of `size` voxels with the default (CPU) model, in a fresh
    process so that its peak RSS is predict's, not that of the benchmarks before it."""
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:
        return pool.submit(_predict_latency, tuple(size), ckpt).result()


def _peak_rss_gb() -> float:
    """This process's high-water resident memory (VmHWM); unlike getrusage's maxrss it can be reset."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    raise RuntimeError("no VmHWM in /proc/self/status")


def _predict_latency(size, ckpt: str | None) -> dict:
    # Linux hands the parent's peak RSS (here: the VNet benchmark) to a child even across exec; reset it.
    Path("/proc/self/clear_refs").write_text("5")
    with tempfile.TemporaryDirectory() as tmp:
        if ckpt is None:  # speed does not depend on the weights; an untrained default model will do
            ckpt = str(Path(tmp) / "default.ckpt")
            module = SpineSegmentationModule(net=CPU_NET, levels=["L2", "L3", "L4", "L5"])
            torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, ckpt)
        report, _, _ = large_scan.predict_large(ckpt, size)
    return dict(predict_seconds=report["timings"]["total_s"], predict_peak_rss_gb=_peak_rss_gb(),
                predict_levels=",".join(report["levels"]))
