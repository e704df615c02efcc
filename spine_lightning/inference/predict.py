"""The predict task behind `predict.py`: CT in, label map + meshes + report (+ deviation maps) out."""

from __future__ import annotations

import logging
import resource
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from omegaconf import DictConfig, OmegaConf
from rich.progress import track

from spine_lightning.core.cli import conf_dir
from spine_lightning.core.errors import ConfigError, SpineError
from spine_lightning.core.io import atomic_path, sha256, write_json
from spine_lightning.data.centroids import read_centroids
from spine_lightning.data.imageio import read_image
from spine_lightning.data.labels import LUMBAR_LEVELS, UNNAMED_BASE, is_unnamed, label_value, level_value
from spine_lightning.data.scan import STREAMED_SUFFIXES, open_scan
from spine_lightning.inference.centres import automatic_centres
from spine_lightning.inference.checkpoints import checkpoint_paths, load_model
from spine_lightning.inference.export import mask_mesh, signed_distance_at, write_deviation_png, write_mesh
from spine_lightning.inference.inputs import case_name, check_writable, find_cases
from spine_lightning.inference.preview import write_preview
from spine_lightning.inference.segment import predict_levels, preprocessing_of
from spine_lightning.inference.summary import level_summaries

log = logging.getLogger(__name__)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def _read_reference(path: Path) -> sitk.Image:
    reference = read_image(path)
    values = set(np.unique(sitk.GetArrayViewFromImage(reference)).tolist()) - {0}
    if not values & {level_value(lv) for lv in LUMBAR_LEVELS}:
        raise SpineError(f"reference={path}: holds no lumbar label in VerSe numbering (L1-L5 = 20-24)")
    return reference


def _not_a_vertebra(summary: dict, module, cfg: DictConfig) -> str | None:
    """Why a level's mask is not meshed (None: it is): a mask that fills most of its crop is a
    failed segmentation, not a vertebra (one fills under a tenth of the training crop)."""
    prep = preprocessing_of(module)
    fill = summary["volume_mm3"] / (float(np.prod(prep["crop_size"])) * float(prep["spacing"]) ** 3)
    limit = float(cfg.mesh.get("max_crop_fill", 0.25))
    if fill > limit:
        return f"mask fills the crop ({fill:.0%} of it, limit mesh.max_crop_fill={limit}): not a vertebra, not meshed"
    return None


def _within_face_budget(mesh, cfg: DictConfig):
    """The mesh decimated to `mesh.max_faces` faces when it has more (bounds export time and memory)."""
    budget = int(cfg.mesh.get("max_faces", 200_000))
    return mesh.simplify_quadric_decimation(face_count=budget) if len(mesh.faces) > budget else mesh


def predict_case(module, path: Path, out_dir: Path, cfg: DictConfig, checkpoints: list[dict]) -> dict:
    """All outputs of one CT; inputs are read and checked before anything is written."""
    timings, t0 = {}, time.perf_counter()
    scan = open_scan(path)
    timings["read_s"] = time.perf_counter() - t0
    reference = _read_reference(Path(cfg.reference)) if cfg.get("reference") else None
    levels = list(cfg.levels or module.hparams.levels)

    t = time.perf_counter()
    memo = {}  # crops the network has segmented: refinement's last crop is the final one (centres.py)
    if cfg.get("centroids"):
        # The centroid file's voxel axes need the scan's geometry only: an empty uint8 grid.
        centres, localisation = read_centroids(cfg.centroids, scan.grid()), dict(source=str(cfg.centroids))
        centres = {lv: c for lv, c in centres.items() if lv in levels}
    else:
        centres, localisation = automatic_centres(module, scan, levels, cfg.get("refine") or {}, naming_hint(cfg), memo)
        if not localisation["named"]:
            log.warning(
                "%s: vertebrae segmented but not named (%s); pass centroids=<file> or a hint "
                "lowest_level=<level> / levels_in_view=[<lowest>,<highest>]",
                path,
                localisation["note"],
            )
    timings["localise_s"] = time.perf_counter() - t

    t = time.perf_counter()
    pred = predict_levels(module, scan, centres, mirror_lr=bool(cfg.get("mirror_lr", False)), memo=memo)
    timings["predict_s"] = time.perf_counter() - t

    case = case_name(path)
    t = time.perf_counter()
    with atomic_path(out_dir / f"{case}_seg.nii.gz") as tmp:
        sitk.WriteImage(pred.label, str(tmp), useCompression=True)
    per_level = {}
    written = list(pred.centres)  # levels, or 'vertebra1', ... when nothing could be named
    for level, (summary, mask) in level_summaries(pred, written).items():
        skipped = _not_a_vertebra(summary, module, cfg)
        if skipped:  # meshing a crop-filling blob costs minutes and GBs, and it is no vertebra
            per_level[level] = dict(summary, skipped=skipped)
            continue
        mesh = _within_face_budget(mask_mesh(mask, int(cfg.mesh.smoothing_iterations)), cfg)
        write_mesh(out_dir / f"{case}_{level}.stl", mesh)
        summary["mesh"] = dict(
            file=f"{case}_{level}.stl",
            vertices=len(mesh.vertices),
            faces=len(mesh.faces),
            watertight=bool(mesh.is_watertight),
        )
        if (
            reference is not None
            and not is_unnamed(level)
            and (sitk.GetArrayViewFromImage(reference) == level_value(level)).any()
        ):
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
    preview = write_preview(
        out_dir / f"{case}_preview.png",
        scan,
        pred.label,
        {label_value(name): name for name in written},
        localisation.get("anchor_mm"),
        case,
    )
    timings["export_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0
    named = localisation.get("named", True)  # given centroids name their levels

    report = dict(
        case=case,
        input=str(path),
        levels=per_level,
        localisation=localisation,
        named=named,
        empty=not per_level,
        note=(
            "no lumbar vertebra found in this CT: the label map is empty"
            if not per_level
            else f"{len(per_level)} level(s) segmented: {', '.join(per_level)}"
            if named
            else f"{len(per_level)} vertebra(e) segmented but NOT named ({localisation.get('note')}): "
            f"label values {UNNAMED_BASE + 1}, {UNNAMED_BASE + 2}, ... from foot to head; pass centroids= "
            "or a hint (lowest_level=, levels_in_view=) to name them"
        ),
        preview=preview,
        checkpoints=checkpoints,  # more than one: their ensemble
        settings=dict(
            levels=levels,
            preprocessing=preprocessing_of(module),
            precision="bf16" if module.bf16 else "fp32",
            mirror_lr=bool(cfg.get("mirror_lr", False)),
            smoothing_iterations=int(cfg.mesh.smoothing_iterations),
            label_values={
                **{lv: label_value(lv) for lv in (levels if named else written)},
                **(
                    {}
                    if named
                    else {
                        "unnamed": f"{UNNAMED_BASE + 1}, {UNNAMED_BASE + 2}, ... = vertebra1, "
                        "vertebra2, ... from foot to head (outside VerSe's 1-28: not a level)"
                    }
                ),
            },
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


def naming_hint(cfg: DictConfig) -> dict | None:
    """The user's naming hint (`lowest_level`, `levels_in_view`), or None."""
    lowest, in_view = cfg.get("lowest_level"), cfg.get("levels_in_view")
    if in_view is not None and len(in_view) != 2:
        raise ConfigError("levels_in_view", in_view, "[lowest, highest], e.g. [L1,L5]")
    for level in ([lowest] if lowest else []) + list(in_view or []):
        level_value(str(level))
    if not lowest and not in_view:
        return None
    return dict(
        lowest_level=str(lowest) if lowest else None, levels_in_view=[str(v) for v in in_view] if in_view else None
    )


def predict(cfg: DictConfig) -> list[dict]:
    paths = checkpoint_paths(cfg.get("ckpt_path"))  # none given: the bundled models
    if not cfg.get("input"):
        raise SpineError("input: required (a CT file, a DICOM folder, or a folder of CTs)")
    cases = find_cases(Path(cfg.input))
    if len(cases) > 1 and (cfg.get("centroids") or cfg.get("reference")):
        raise SpineError(f"input={cfg.input}: centroids and reference apply to one CT, not to a folder of CTs")
    if cfg.get("localizer_ckpt"):
        raise ConfigError("localizer_ckpt", cfg.localizer_ckpt, "null: the built-in localiser needs no weights")
    module = load_model(paths, precision=cfg.precision)
    for level in cfg.levels or []:
        level_value(level)
    out_dir = Path(cfg.output_dir)
    check_writable(out_dir)
    checkpoints = [dict(path=str(p), sha256=sha256(p)) for p in paths]
    reports = []
    for path in track(cases, description="predicting", disable=len(cases) < 2):
        reports.append(predict_case(module, path, out_dir, cfg, checkpoints))
        log.info("%s: %s", path, reports[-1]["note"])
    return reports


def predict_config(**values) -> DictConfig:
    """The settings of `conf/predict.yaml` with `values` applied, for calling `predict` from Python
    (tests, benchmarks) without a Hydra run."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("predict", overrides=["output_dir=null"])
    task = {k: v for k, v in cfg.items() if k not in ("paths", "hydra")}
    return OmegaConf.merge(OmegaConf.create(task), values)
