"""predict.py end to end on the real lumbar CT, and its one-line errors on bad input."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import trimesh
from conftest import DEFAULT_MODEL, ROOT, run_cli

from spine_lightning.core.errors import SpineError
from spine_lightning.data.assets import asset_path
from spine_lightning.data.centroids import write_centroids
from spine_lightning.data.crops import label_centroids
from spine_lightning.inference.predict import predict, predict_config

REAL = asset_path("real_ct")  # the real lumbar CT ships with the package
TOTALSEG_TO_VERSE = {31: 20, 30: 21, 29: 22, 28: 23, 27: 24, 26: 26}
NAMES = {20: "L1", 21: "L2", 22: "L3", 23: "L4", 24: "L5", 26: "S1"}


@pytest.fixture(scope="module")
def real_case(tmp_path_factory):
    """The real CT, a VerSe centroid JSON and a VerSe-numbered reference made from its label map."""
    folder = tmp_path_factory.mktemp("real_case")
    image = sitk.ReadImage(str(REAL / "lumbar_ct_3mm.nii.gz"))
    label = sitk.ReadImage(str(REAL / "lumbar_ct_3mm_vertebrae.nii.gz"))
    verse = sitk.ChangeLabel(label, changeMap={**{k: 0 for k in (32, 33)}, **TOTALSEG_TO_VERSE})
    sitk.WriteImage(verse, str(folder / "reference.nii.gz"))
    centres = {NAMES[v]: c for v, c in label_centroids(verse).items()}
    write_centroids(folder / "ctd.json", centres, image)
    return dict(folder=folder, image=image, centres=centres)


_cfg = predict_config


def test_predict_real_ct_with_centroids_and_reference(real_case, tmp_path):
    out = tmp_path / "out"
    result = run_cli(
        [
            "predict.py",
            f"ckpt_path={DEFAULT_MODEL}",  # a trained model: a one-epoch network's blobs are not meshed
            f"input={REAL / 'lumbar_ct_3mm.nii.gz'}",
            f"output_dir={out}",
            f"centroids={real_case['folder'] / 'ctd.json'}",
            f"reference={real_case['folder'] / 'reference.nii.gz'}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    image = real_case["image"]
    seg = sitk.ReadImage(str(out / "lumbar_ct_3mm_seg.nii.gz"))
    assert seg.GetSize() == image.GetSize()
    assert seg.GetOrigin() == image.GetOrigin()
    assert seg.GetSpacing() == image.GetSpacing()
    assert seg.GetDirection() == image.GetDirection()
    assert set(np.unique(sitk.GetArrayViewFromImage(seg))) <= {0, 21, 22, 23, 24}

    report = json.loads((out / "lumbar_ct_3mm_report.json").read_text())
    assert report["checkpoints"][0]["sha256"] and report["peak_rss_mb"] > 0 and report["timings"]["total_s"] > 0
    size = np.array(image.GetSize())
    corners = np.array(
        [
            image.TransformIndexToPhysicalPoint([int(i), int(j), int(k)])
            for i in (0, size[0] - 1)
            for j in (0, size[1] - 1)
            for k in (0, size[2] - 1)
        ]
    )
    lo, hi = corners.min(axis=0) - 1e-3, corners.max(axis=0) + 1e-3
    assert report["levels"], "no level segmented: the loop below would check nothing"
    assert not [lv for lv, e in report["levels"].items() if "skipped" in e], report["levels"]
    for level, entry in report["levels"].items():
        # The crop centre is the label centroid read back through the JSON (direction diag(-1,-1,1)).
        assert np.linalg.norm(np.subtract(entry["crop_centre_mm"], real_case["centres"][level])) < 2.0
        mesh = trimesh.load(out / entry["mesh"]["file"])
        assert mesh.is_watertight and entry["mesh"]["watertight"]
        # faces point outwards whatever the grid's axis order and direction: a positive volume near the mask's
        assert mesh.volume == pytest.approx(entry["volume_mm3"], rel=0.2), level
        assert np.all(mesh.vertices >= lo) and np.all(mesh.vertices <= hi), level
        assert np.all(np.asarray(entry["bbox_mm"]["min"]) >= lo) and np.all(
            np.asarray(entry["bbox_mm"]["max"]) <= hi
        )
        # Centroid and volume agree with the label map that was written.
        mask = sitk.GetArrayViewFromImage(seg) == {"L2": 21, "L3": 22, "L4": 23, "L5": 24}[level]
        assert entry["volume_mm3"] == pytest.approx(mask.sum() * 27.0)
        assert 0.5 < entry["mean_probability"] <= 1.0
        ply = out / entry["deviation_mm"]["file"]
        assert b"property float signed_distance" in ply.read_bytes()[:400]
        assert (out / f"lumbar_ct_3mm_{level}_deviation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_centroids_json_round_trip_through_an_oblique_direction(real_case):
    from spine_lightning.data.centroids import read_centroids

    image = sitk.ReadImage(str(REAL / "lumbar_ct_3mm.nii.gz"))
    angle = np.deg2rad(20)
    image.SetDirection((np.cos(angle), -np.sin(angle), 0, np.sin(angle), np.cos(angle), 0, 0, 0, 1))
    centres = {"L3": (1.0, -120.0, 300.0), "L4": (4.0, -130.0, 280.0)}
    path = real_case["folder"] / "oblique_ctd.json"
    write_centroids(path, centres, image, axis_code=("L", "A", "S"))
    back = read_centroids(path, image)
    for level, point in centres.items():
        assert np.allclose(back[level], point, atol=1e-6)


def test_folder_of_cts_uses_the_localiser(tiny_checkpoint, tmp_path):
    folder = tmp_path / "cts"
    folder.mkdir()
    shutil.copy(REAL / "lumbar_ct_3mm.nii.gz", folder / "a.nii.gz")
    image = sitk.ReadImage(str(REAL / "lumbar_ct_3mm.nii.gz"))
    sitk.WriteImage(image[:, :, 104:], str(folder / "chest.nii.gz"))  # above L1: no lumbar spine
    reports = predict(
        _cfg(ckpt_path=str(tiny_checkpoint), input=str(folder), output_dir=str(tmp_path / "out"))
    )
    by_case = {r["case"]: r for r in reports}
    assert set(by_case) == {"a", "chest"}
    assert by_case["chest"]["empty"] and "no lumbar vertebra" in by_case["chest"]["note"]
    chest_seg = sitk.ReadImage(str(tmp_path / "out" / "chest_seg.nii.gz"))
    assert not sitk.GetArrayViewFromImage(chest_seg).any()
    assert by_case["a"]["localisation"]["source"] == "automatic"
    assert {"L2", "L3", "L4", "L5"} <= set(by_case["a"]["localisation"]["centres_mm"])


def _bad_checkpoint(path: Path) -> Path:
    torch.save(
        {"state_dict": {}, "hyper_parameters": {"net": {"_target_": "monai.networks.nets.UNet"}}}, path
    )
    return path


@pytest.mark.parametrize("case", ["not_an_image", "other_architecture", "no_lumbar_centroids", "unwritable"])
def test_bad_input_fails_cleanly_without_outputs(case, tiny_checkpoint, real_case, tmp_path):
    out = tmp_path / "out"
    cfg = dict(ckpt_path=str(tiny_checkpoint), input=str(REAL / "lumbar_ct_3mm.nii.gz"), output_dir=str(out))
    if case == "not_an_image":
        cfg["input"] = str(tmp_path / "notes.nii.gz")
        Path(cfg["input"]).write_text("not an image")
        expected, named = "corrupt gzip", "notes.nii.gz"  # text, not a gzip stream
    elif case == "other_architecture":
        cfg["ckpt_path"] = str(_bad_checkpoint(tmp_path / "unet.ckpt"))
        expected, named = "not a spine_lightning segmentation checkpoint", "unet.ckpt"
    elif case == "no_lumbar_centroids":
        cfg["centroids"] = str(tmp_path / "ctd.json")
        Path(cfg["centroids"]).write_text(
            json.dumps([{"direction": ["P", "I", "R"]}, {"label": 10, "X": 1, "Y": 2, "Z": 3}])
        )
        expected, named = "names no lumbar vertebra", "ctd.json"
    else:
        blocker = tmp_path / "a_file"
        blocker.write_text("")
        cfg["output_dir"] = str(blocker / "out")
        out = blocker / "out"
        expected, named = "not writable", "output_dir="
    with pytest.raises(SpineError, match=expected) as err:
        predict(_cfg(**cfg))
    assert "\n" not in str(err.value) and named in str(err.value)
    assert not out.exists() or not any(out.iterdir())


def test_cli_bad_input_is_one_line_and_non_zero(tmp_path):
    bad = tmp_path / "scan.nii.gz"
    bad.write_text("not an image")
    result = run_cli(
        [
            "predict.py",
            f"ckpt_path={tmp_path / 'missing.ckpt'}",
            f"input={bad}",
            f"output_dir={tmp_path / 'out'}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=ROOT,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "missing.ckpt" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_oblique_scan_gives_the_same_masks_in_physical_space(tiny_checkpoint, real_case):
    """The same anatomy on an oblique grid: masks agree once mapped back, so direction is honoured."""
    from spine_lightning.inference.checkpoints import load_segmentation_module
    from spine_lightning.inference.segment import predict_levels

    module = load_segmentation_module(tiny_checkpoint)
    image = real_case["image"]
    angle = np.deg2rad(25)
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    direction = (np.asarray(image.GetDirection()).reshape(3, 3) @ rot).ravel().tolist()
    centre = np.asarray(image.TransformContinuousIndexToPhysicalPoint(np.array(image.GetSize()) / 2.0))
    oblique_ref = sitk.Image(image.GetSize(), sitk.sitkInt16)
    oblique_ref.SetSpacing(image.GetSpacing())
    oblique_ref.SetDirection(direction)
    half = np.asarray(direction).reshape(3, 3) @ (
        np.array(image.GetSize()) / 2.0 * np.array(image.GetSpacing())
    )
    oblique_ref.SetOrigin((centre - half).tolist())
    oblique = sitk.Resample(image, oblique_ref, sitk.Transform(), sitk.sitkLinear, -1024.0)
    centres = {lv: real_case["centres"][lv] for lv in ("L3", "L4")}

    straight = predict_levels(module, image, centres).label
    tilted = predict_levels(module, oblique, centres).label
    assert tilted.GetDirection() == oblique.GetDirection() and tilted.GetOrigin() == oblique.GetOrigin()
    back = sitk.GetArrayFromImage(
        sitk.Resample(tilted, straight, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    )
    ref = sitk.GetArrayFromImage(straight)
    for value in (22, 23):
        a, b = back == value, ref == value
        inside = sitk.GetArrayFromImage(
            sitk.Resample(oblique_ref * 0 + 1, straight, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        ).astype(bool)  # compare only where the oblique grid covers the straight one
        a, b = a & inside, b & inside
        assert b.sum() > 0
        iou = (a & b).sum() / (a | b).sum()
        assert iou > 0.6, value


def test_streamed_and_in_memory_inputs_give_the_same_label_map(tiny_checkpoint, real_case, tmp_path):
    sitk.WriteImage(real_case["image"], str(tmp_path / "ct.nii"))  # uncompressed: read region by region
    ctd = str(real_case["folder"] / "ctd.json")
    common = dict(ckpt_path=str(tiny_checkpoint), centroids=ctd, levels=["L3", "L4"])
    streamed = predict(_cfg(input=str(tmp_path / "ct.nii"), output_dir=str(tmp_path / "a"), **common))[0]
    whole = predict(_cfg(input=str(REAL / "lumbar_ct_3mm.nii.gz"), output_dir=str(tmp_path / "b"), **common))[
        0
    ]
    assert streamed["grid"]["streamed"] and not whole["grid"]["streamed"]
    a = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "a" / "ct_seg.nii.gz")))
    b = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "b" / "lumbar_ct_3mm_seg.nii.gz")))
    assert a.any() and np.array_equal(a, b)


def _report_centroid_errors(report: dict, truth: dict) -> dict[str, float]:
    return {lv: float(np.linalg.norm(np.subtract(e["centroid_mm"], truth[lv]))) for lv, e in report["levels"].items()}


def test_default_model_centroids_on_the_real_ct(real_case, tmp_path):
    """The bundled model on the real CT, crops at the label centroids: the report's mask centroids
    against the label map's, each within one voxel of this CT (3 mm). A mask on the wrong grid, a
    flipped axis or a crop off its centre moves a centroid by far more."""
    report = predict(
        _cfg(
            ckpt_path=str(DEFAULT_MODEL),
            input=str(REAL / "lumbar_ct_3mm.nii.gz"),
            output_dir=str(tmp_path),
            centroids=str(real_case["folder"] / "ctd.json"),
        )
    )[0]
    errors = _report_centroid_errors(report, real_case["centres"])
    assert set(errors) == {"L2", "L3", "L4", "L5"}
    assert max(errors.values()) <= 3.0, errors


def test_default_model_without_centroids_finds_every_level_on_the_real_ct(real_case, tmp_path):
    """Localiser + refinement + segmentation: every L2-L5 segmented, named, and its report centroid
    within 5 mm of the label map's."""
    report = predict(
        _cfg(ckpt_path=str(DEFAULT_MODEL), input=str(REAL / "lumbar_ct_3mm.nii.gz"), output_dir=str(tmp_path))
    )[0]
    loc = report["localisation"]
    assert loc["source"] == "automatic" and set(loc["refined_centres_mm"]) == {"L2", "L3", "L4", "L5"}
    assert all(moves for moves in loc["refinement_moves_mm"].values())
    errors = _report_centroid_errors(report, real_case["centres"])
    assert set(errors) == {"L2", "L3", "L4", "L5"}
    assert max(errors.values()) <= 5.0, errors
    truth = real_case["centres"]
    assert report["levels"], "no level segmented"
    for level, entry in report["levels"].items():
        assert min(truth, key=lambda t: np.linalg.norm(np.subtract(truth[t], entry["centroid_mm"]))) == level


def _truncated_gz(tmp: Path) -> Path:
    data = (REAL / "lumbar_ct_3mm.nii.gz").read_bytes()
    path = tmp / "truncated.nii.gz"
    path.write_bytes(data[: len(data) // 2])
    return path


def _nan_ct(tmp: Path, suffix: str) -> Path:
    image = sitk.Cast(sitk.ReadImage(str(REAL / "lumbar_ct_3mm.nii.gz")), sitk.sitkFloat32)
    image[60, 50, 56] = float("nan")  # one voxel, mid-scan
    path = tmp / f"nan_ct{suffix}"
    sitk.WriteImage(image, str(path))
    return path


@pytest.mark.parametrize(
    "make, problem",
    [
        (_truncated_gz, "corrupt gzip"),
        (lambda t: _nan_ct(t, ".nii.gz"), "NaN"),
        (lambda t: _nan_ct(t, ".nii"), "NaN"),
    ],
    ids=["truncated_gz", "nan_nii_gz", "nan_nii"],
)
def test_cli_damaged_ct_stops_with_one_line_and_writes_nothing(make, problem, tiny_checkpoint, tmp_path):
    """The data reader's refusals (gzip CRC, NaN voxels) hold for predict too: no empty label map,
    no report, exit != 0."""
    bad, out = make(tmp_path), tmp_path / "out"
    result = run_cli(
        ["predict.py", f"ckpt_path={tiny_checkpoint}", f"input={bad}", f"output_dir={out}",
         f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=ROOT,
    )
    assert result.returncode != 0, result.stdout[-2000:]
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and bad.name in lines[0] and problem in lines[0], result.stderr[-2000:]
    assert not out.exists() or not any(out.iterdir())


class _AllForeground(torch.nn.Module):
    """A broken network: foreground everywhere (the blob that once took 174 s and 14.6 GB to mesh)."""

    def forward(self, x):
        return torch.cat([torch.full_like(x, -10.0), torch.full_like(x, 10.0)], dim=1)


def test_crop_filling_masks_are_skipped_not_meshed(real_case, tmp_path, monkeypatch):
    import time

    import spine_lightning.inference.predict as predict_module
    from spine_lightning.training.module import SpineSegmentationModule

    net = dict(_target_="spine_lightning.models.GCNResidualFCN", in_channels=1, num_classes=2, width=2, levels=3)
    module = SpineSegmentationModule(net=net, levels=["L2", "L3", "L4", "L5"],
                                     preprocessing=dict(spacing=3.0, crop_size=[32, 48, 32]))
    module.net = _AllForeground()
    module.bf16 = False
    monkeypatch.setattr(predict_module, "load_model", lambda paths, precision: module.eval())
    ckpt = tmp_path / "any.ckpt"
    ckpt.write_bytes(b"hashed only")
    out = tmp_path / "out"
    start = time.perf_counter()
    report = predict(_cfg(ckpt_path=str(ckpt), input=str(REAL / "lumbar_ct_3mm.nii.gz"),
                          centroids=str(real_case["folder"] / "ctd.json"), output_dir=str(out)))[0]
    assert time.perf_counter() - start < 30
    assert report["levels"], "no level found"
    for level, entry in report["levels"].items():
        assert "mask fills the crop" in entry.get("skipped", ""), (level, entry["volume_mm3"])
    assert not list(out.glob("*.stl"))
    assert json.loads((out / "lumbar_ct_3mm_report.json").read_text())["levels"] == report["levels"]


def test_crops_past_the_scan_edge_repeat_its_border_or_are_air():
    from spine_lightning.data.crops import crop_ct, crop_frame

    arr = np.tile(np.arange(10, dtype=np.float32)[:, None, None] * 10.0, (1, 8, 8))  # HU = 10 x slice
    image = sitk.GetImageFromArray(arr)
    frame = crop_frame((3.5, 3.5, 8.5), [6, 6, 8], 1.0)  # z 5..12: reaches 3 slices past the last (9)
    repeated = crop_ct(image, frame)  # the default: prediction and training crop alike
    assert np.allclose(repeated[:, 2, 2], [50, 60, 70, 80, 90, 90, 90, 90])  # inside unchanged, then the edge
    air = crop_ct(image, frame, outside="air")
    assert np.allclose(air[:, 2, 2], [50, 60, 70, 80, 90, -1024, -1024, -1024])


def test_a_scan_cut_through_a_vertebra_gets_no_band_along_its_cut_face():
    """The TPTBox CT is cut through L2: filled with air past the cut, the cut face looked like bone
    to the network, which labelled a band along it (over 3x the reference's voxels on that face)."""
    from spine_lightning.data.labels import VERSE_NAMES
    from spine_lightning.inference.checkpoints import load_segmentation_module
    from spine_lightning.inference.segment import predict_levels

    image = sitk.ReadImage(str(asset_path("verse") / "sub-tptbox_ct.nii.gz"))
    truth = sitk.ReadImage(str(asset_path("verse") / "sub-tptbox_seg-vert_msk.nii.gz"))
    module = load_segmentation_module(DEFAULT_MODEL)
    levels = module.hparams.levels
    centres = {VERSE_NAMES[v]: c for v, c in label_centroids(truth).items() if VERSE_NAMES.get(v) in levels}
    pred = sitk.GetArrayFromImage(predict_levels(module, image, centres).label) > 0
    ref = sitk.GetArrayFromImage(truth) > 0
    faces = [(0, 0), (0, -1), (1, 0), (1, -1), (2, 0), (2, -1)]
    cut = [(a, i) for a, i in faces if np.take(ref, i, axis=a).any()]
    assert cut, "the scan should cut a vertebra"
    for axis, i in cut:
        extra = np.take(pred, i, axis=axis) & ~np.take(ref, i, axis=axis)
        assert extra.sum() < 0.5 * np.take(ref, i, axis=axis).sum(), f"band along face {axis}/{i}"


def test_test_time_mirroring_is_symmetric_and_changes_an_asymmetric_network():
    """Mirrored crop in, mirrored probability out: with `mirror_lr` the answer cannot depend on
    which side is which, and an untrained (asymmetric) network shows that it did without."""
    from spine_lightning.inference.segment import crop_probability
    from spine_lightning.models import GCNResidualFCN

    torch.manual_seed(0)
    net = GCNResidualFCN(width=2, levels=3, kernel=3, gcn_kernel=5, norm="instance").eval()
    x = torch.rand(1, 1, 16, 24, 20)
    plain, flipped = crop_probability(net, x), crop_probability(net, x.flip(-1))
    assert not torch.allclose(plain, flipped.flip(-1), atol=1e-4)  # the network alone is not symmetric
    mirrored = crop_probability(net, x, mirror_lr=True)
    assert torch.allclose(mirrored, crop_probability(net, x.flip(-1), mirror_lr=True).flip(-1), atol=1e-6)
    assert torch.allclose(mirrored, 0.5 * (plain + flipped.flip(-1)), atol=1e-6)
