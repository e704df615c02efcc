"""The predict task behind `predict.py`: CT in, label map + meshes + report (+ deviation maps) out."""

from __future__ import annotations

import hashlib
import logging
import resource
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from omegaconf import DictConfig, OmegaConf
from rich.progress import track

from .centroids import read_centroids
from .checkpoints import load_segmentation_module
from .data.labels import LUMBAR_LEVELS, level_value
from .errors import ConfigError, SpineError
from .export import mask_mesh, signed_distance_at, write_deviation_png, write_mesh
from .inference import PROBABILITY_SCALE, Prediction, automatic_centres, predict_levels, preprocessing_of
from .io import atomic_path, write_json
from .scan import STREAMED_SUFFIXES, Scan

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd")


def _read_input(path: Path) -> sitk.Image:
    """The one place that reads a CT (a file, or a folder holding one DICOM series)."""
    try:
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            files = reader.GetGDCMSeriesFileNames(str(path))
            if not files:
                raise RuntimeError("no DICOM series")
            reader.SetFileNames(files)
            image = reader.Execute()
        else:
            image = sitk.ReadImage(str(path))
    except RuntimeError:
        raise SpineError(
            f"{path}: not a readable image (NIfTI, MHA, NRRD or a DICOM series folder)"
        ) from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise SpineError(f"{path}: not a 3-D single-channel CT (dimension {image.GetDimension()})")
    return image


def _open_input(path: Path) -> Scan:
    """The CT as a Scan: uncompressed single files are streamed region by region (a large scan is
    never held whole); compressed files and DICOM series are read whole by `_read_input`."""
    if path.is_file() and path.name.lower().endswith(STREAMED_SUFFIXES):
        try:
            scan = Scan.streamed(path)
        except RuntimeError:
            raise SpineError(
                f"{path}: not a readable image (NIfTI, MHA, NRRD or a DICOM series folder)"
            ) from None
        if scan.dimension != 3 or scan.components != 1:
            raise SpineError(f"{path}: not a 3-D single-channel CT (dimension {scan.dimension})")
        return scan
    return Scan.in_memory(_read_input(path))


def _case_name(path: Path) -> str:
    name = path.name
    for suffix in IMAGE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _cases(path: Path) -> list[Path]:
    """One CT per entry: the file, the DICOM folder, or every image file in a folder of CTs."""
    if not path.exists():
        raise SpineError(f"input={path}: no such file or folder")
    if path.is_file() or sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path)):
        return [path]
    found = sorted(
        p
        for p in path.iterdir()
        if p.name.endswith(IMAGE_SUFFIXES)
        or (p.is_dir() and sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(p)))
    )
    if not found:
        raise SpineError(
            f"input={path}: folder holds no CT ({', '.join(IMAGE_SUFFIXES)} files or DICOM series)"
        )
    return found


def _check_writable(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(out_dir / ".write-test") as tmp:
            tmp.write_bytes(b"")
        (out_dir / ".write-test").unlink()
    except OSError as err:
        raise SpineError(f"output_dir={out_dir}: not writable ({err.strerror})") from None


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def level_summaries(pred: Prediction, levels) -> dict[str, tuple[dict, sitk.Image]]:
    """Per level present: volume, centroid, bounding box and mean probability on the input grid,
    and the level's mask cut to its bounding box (same physical geometry, a fraction of the grid)."""
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(pred.label)
    present, out = set(stats.GetLabels()), {}
    for level in levels:
        value = level_value(level)
        if value not in present:
            continue
        x0, y0, z0, nx, ny, nz = stats.GetBoundingBox(value)
        corners = [
            pred.label.TransformIndexToPhysicalPoint((x, y, z))
            for x in (x0, x0 + nx - 1)
            for y in (y0, y0 + ny - 1)
            for z in (z0, z0 + nz - 1)
        ]
        box = (slice(z0, z0 + nz), slice(y0, y0 + ny), slice(x0, x0 + nx))
        mask = sitk.GetArrayViewFromImage(pred.label)[box] == value
        summary = dict(
            volume_mm3=float(stats.GetPhysicalSize(value)),
            centroid_mm=list(stats.GetCentroid(value)),
            bbox_mm=dict(min=np.min(corners, axis=0).tolist(), max=np.max(corners, axis=0).tolist()),
            bbox_index=dict(start=[x0, y0, z0], size=[nx, ny, nz]),
            mean_probability=float(pred.probability[box][mask].mean()) / PROBABILITY_SCALE,
            crop_centre_mm=list(pred.centres[level]),
        )
        out[level] = (summary, sitk.RegionOfInterest(pred.label, [nx, ny, nz], [x0, y0, z0]) == value)
    return out


def _read_reference(path: Path) -> sitk.Image:
    reference = _read_input(path)
    values = set(np.unique(sitk.GetArrayViewFromImage(reference)).tolist()) - {0}
    if not values & {level_value(lv) for lv in LUMBAR_LEVELS}:
        raise SpineError(f"reference={path}: holds no lumbar label in VerSe numbering (L1-L5 = 20-24)")
    return reference


def predict_case(module, path: Path, out_dir: Path, cfg: DictConfig, ckpt_hash: str) -> dict:
    """All outputs of one CT; inputs are read and checked before anything is written."""
    timings, t0 = {}, time.perf_counter()
    scan = _open_input(path)
    timings["read_s"] = time.perf_counter() - t0
    reference = _read_reference(Path(cfg.reference)) if cfg.get("reference") else None
    levels = list(cfg.levels or module.hparams.levels)

    t = time.perf_counter()
    if cfg.get("centroids"):
        # The centroid file's voxel axes need the scan's geometry only: an empty uint8 grid.
        centres, localisation = read_centroids(cfg.centroids, scan.grid()), dict(source=str(cfg.centroids))
        centres = {lv: c for lv, c in centres.items() if lv in levels}
    else:
        centres, localisation = automatic_centres(module, scan, levels, cfg.get("refine") or {})
    timings["localise_s"] = time.perf_counter() - t

    t = time.perf_counter()
    pred = predict_levels(module, scan, centres)
    timings["predict_s"] = time.perf_counter() - t

    case = _case_name(path)
    t = time.perf_counter()
    with atomic_path(out_dir / f"{case}_seg.nii.gz") as tmp:
        sitk.WriteImage(pred.label, str(tmp), useCompression=True)
    per_level = {}
    for level, (summary, mask) in level_summaries(pred, levels).items():
        mesh = mask_mesh(mask, int(cfg.mesh.smoothing_iterations))
        write_mesh(out_dir / f"{case}_{level}.stl", mesh)
        summary["mesh"] = dict(
            file=f"{case}_{level}.stl",
            vertices=len(mesh.vertices),
            faces=len(mesh.faces),
            watertight=bool(mesh.is_watertight),
        )
        if reference is not None and (sitk.GetArrayViewFromImage(reference) == level_value(level)).any():
            distance = signed_distance_at(mesh.vertices, reference == level_value(level))
            write_mesh(out_dir / f"{case}_{level}_deviation.ply", mesh, distance)
            write_deviation_png(
                out_dir / f"{case}_{level}_deviation.png",
                mesh,
                distance,
                f"{case} {level}",
                cfg.get("deviation_limit_mm"),
            )
            summary["deviation_mm"] = dict(
                mean=float(distance.mean()),
                mean_abs=float(np.abs(distance).mean()),
                min=float(distance.min()),
                max=float(distance.max()),
                file=f"{case}_{level}_deviation.ply",
            )
        per_level[level] = summary
    timings["export_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0

    report = dict(
        case=case,
        input=str(path),
        levels=per_level,
        localisation=localisation,
        empty=not per_level,
        note=(
            "no lumbar vertebra found in this CT: the label map is empty"
            if not per_level
            else f"{len(per_level)} level(s) segmented: {', '.join(per_level)}"
        ),
        checkpoint=dict(path=str(cfg.ckpt_path), sha256=ckpt_hash),
        settings=dict(
            levels=levels,
            preprocessing=preprocessing_of(module),
            smoothing_iterations=int(cfg.mesh.smoothing_iterations),
            label_values={lv: level_value(lv) for lv in levels},
        ),
        grid=dict(
            size=list(scan.size),
            spacing=list(scan.spacing),
            origin=list(scan.origin),
            direction=list(scan.direction),
            streamed=path.name.lower().endswith(STREAMED_SUFFIXES),
        ),
        timings=timings,
        peak_rss_mb=peak_rss_mb(),
    )
    write_json(out_dir / f"{case}_report.json", report)
    return report


def predict(cfg: DictConfig) -> list[dict]:
    if not cfg.get("ckpt_path"):
        raise SpineError("ckpt_path: required (a checkpoint written by train.py)")
    if not cfg.get("input"):
        raise SpineError("input: required (a CT file, a DICOM folder, or a folder of CTs)")
    cases = _cases(Path(cfg.input))
    if len(cases) > 1 and (cfg.get("centroids") or cfg.get("reference")):
        raise SpineError(
            f"input={cfg.input}: centroids and reference apply to one CT, not to a folder of CTs"
        )
    if cfg.get("localizer_ckpt"):
        raise ConfigError(
            "localizer_ckpt", cfg.localizer_ckpt, "null: the built-in localiser needs no weights"
        )
    module = load_segmentation_module(cfg.ckpt_path)
    for level in cfg.levels or []:
        level_value(level)
    out_dir = Path(cfg.output_dir)
    _check_writable(out_dir)
    ckpt_hash = sha256(Path(cfg.ckpt_path))
    reports = []
    for path in track(cases, description="predicting", disable=len(cases) < 2):
        reports.append(predict_case(module, path, out_dir, cfg, ckpt_hash))
        log.info("%s: %s", path, reports[-1]["note"])
    return reports


def predict_config(**values) -> DictConfig:
    """The settings of `conf/predict.yaml` with `values` applied, for calling `predict` from Python
    (tests, benchmarks) without a Hydra run."""
    from hydra import compose, initialize_config_dir

    conf_dir = Path(__file__).resolve().parent.parent / "conf"
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        cfg = compose("predict", overrides=["output_dir=null"])
    task = {k: v for k, v in cfg.items() if k not in ("paths", "hydra")}
    return OmegaConf.merge(OmegaConf.create(task), values)
