"""Surface distances and per-level scores against hand-computed values and SimpleITK's Hausdorff."""

import math

import numpy as np
import pytest
import SimpleITK as sitk

from spine_lightning.evaluation.metrics import overlap, surface_distances
from spine_lightning.evaluation.score import score_levels, summarise


def _label_map(arr: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> sitk.Image:
    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.SetSpacing(spacing)
    img.SetOrigin((10.0, -5.0, 3.0))
    img.SetDirection((-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0))
    return img


def test_identical_masks_have_zero_distances():
    a = np.zeros((20, 20, 20), bool)
    a[5:15, 4:12, 6:16] = True
    d = surface_distances(a, a, (0.8, 0.8, 2.5))
    assert d == dict(assd=0.0, hd95=0.0, hd=0.0)


def test_shifted_box_distances_in_millimetres():
    # Two 10-voxel cubes, one shifted by 3 voxels along z, at 2.5 mm slices: every surface point
    # is at most 3 slices = 7.5 mm from the other surface; the faces that moved are exactly 7.5 mm.
    a = np.zeros((30, 20, 20), bool)
    b = np.zeros_like(a)
    a[5:15, 5:15, 5:15] = True
    b[8:18, 5:15, 5:15] = True
    d = surface_distances(a, b, (1.0, 1.0, 2.5))
    img_a, img_b = (_label_map(m, (1.0, 1.0, 2.5)) for m in (a, b))
    hausdorff = sitk.HausdorffDistanceImageFilter()
    hausdorff.Execute(img_a, img_b)
    assert math.isclose(d["hd"], hausdorff.GetHausdorffDistance())
    assert math.isclose(d["hd"], 7.5)
    assert math.isclose(d["hd95"], 7.5)
    assert 0.0 < d["assd"] < 7.5


def test_empty_prediction_gives_nan_distances():
    a = np.zeros((10, 10, 10), bool)
    b = a.copy()
    b[2:5, 2:5, 2:5] = True
    assert all(math.isnan(v) for v in surface_distances(a, b).values())


def test_score_levels_matches_hand_computed_iou_and_dice():
    truth = np.zeros((20, 16, 16), np.uint8)
    pred = np.zeros_like(truth)
    truth[2:8, 4:10, 4:10] = 21  # L2: 6*6*6 = 216 voxels
    pred[2:8, 4:10, 4:7] = 21  # half of it: 108 voxels, all inside
    truth[10:16, 4:10, 4:10] = 22  # L3: 216 voxels
    pred[12:18, 4:10, 4:10] = 22  # shifted by 2 slices: 144 shared, 288 in the union
    rows = {
        r["level"]: r
        for r in score_levels(
            _label_map(pred, (0.8, 0.8, 2.0)), _label_map(truth, (0.8, 0.8, 2.0)), ["L2", "L3", "L4"]
        )
    }
    assert set(rows) == {"L2", "L3"}  # L4 is absent from the truth: not scored
    assert math.isclose(rows["L2"]["iou"], 108 / 216) and math.isclose(rows["L2"]["dice"], 2 * 108 / 324)
    assert math.isclose(rows["L3"]["iou"], 144 / 288) and math.isclose(rows["L3"]["dice"], 2 * 144 / 432)
    hausdorff = sitk.HausdorffDistanceImageFilter()
    hausdorff.Execute(_label_map(pred == 22, (0.8, 0.8, 2.0)), _label_map(truth == 22, (0.8, 0.8, 2.0)))
    assert math.isclose(rows["L3"]["hd_mm"], hausdorff.GetHausdorffDistance())
    assert math.isclose(rows["L3"]["hd_mm"], 4.0)  # two 2 mm slices
    summary = summarise([dict(subject="a", **r) for r in rows.values()], ["L2", "L3"])
    assert math.isclose(summary["eval/iou_mean"], 0.5)
    assert overlap(pred == 22, truth == 22)["iou"] == rows["L3"]["iou"]


# --- Surface distances against MONAI (the field's reference implementation) ----------------------


def _monai(a: np.ndarray, b: np.ndarray, spacing_xyz) -> dict[str, float]:
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    pa, pb = (np.asarray(m, np.float32)[None, None] for m in (a, b))
    sp = tuple(spacing_xyz)[::-1]  # arrays are [z, y, x]
    return dict(
        assd=float(compute_average_surface_distance(pa, pb, symmetric=True, spacing=sp)),
        hd95=float(compute_hausdorff_distance(pa, pb, percentile=95, spacing=sp)),
        hd=float(compute_hausdorff_distance(pa, pb, spacing=sp)),
    )


def test_concentric_cubes_match_the_hand_computed_assd_and_monai():
    """A 10-voxel cube centred in a 14-voxel cube (1 mm voxels). Every surface voxel of the inner
    cube is 2 mm from the outer surface; an outer surface voxel is at the distance of its offsets
    beyond the inner cube along each axis (0, 1 or 2 per axis, at least one 2)."""
    a = np.zeros((20, 20, 20), bool)
    b = np.zeros_like(a)
    a[5:15, 5:15, 5:15] = True
    b[3:17, 3:17, 3:17] = True
    offsets = [2, 1] + [0] * 10 + [1, 2]  # per axis, for coordinates 3..16
    outer = [math.sqrt(i * i + j * j + k * k) for i in offsets for j in offsets for k in offsets if 2 in (i, j, k)]
    inner = [2.0] * (10**3 - 8**3)
    assert len(outer) == 14**3 - 12**3
    expected = (sum(inner) + sum(outer)) / (len(inner) + len(outer))
    d = surface_distances(a, b)
    assert math.isclose(d["assd"], expected, rel_tol=1e-9)
    assert math.isclose(d["hd"], math.sqrt(12))  # an outer corner to the inner corner
    monai = _monai(a, b, (1.0, 1.0, 1.0))
    assert math.isclose(d["assd"], monai["assd"], rel_tol=1e-5)
    assert math.isclose(d["hd95"], monai["hd95"], rel_tol=1e-5)


def test_random_blobs_match_monai_with_anisotropic_spacing():
    from scipy import ndimage

    rng = np.random.default_rng(0)
    blobs = [ndimage.gaussian_filter(rng.random((24, 30, 28)), 2.5) for _ in range(2)]
    a, b = (blob > np.quantile(blob, 0.6) for blob in blobs)
    a[:, :, :3] = True  # touches the image border: the border counts as outside, as in MONAI
    spacing = (0.8, 1.1, 2.5)
    ours, monai = surface_distances(a, b, spacing), _monai(a, b, spacing)
    for key in ("assd", "hd95", "hd"):
        assert math.isclose(ours[key], monai[key], rel_tol=1e-5), (key, ours, monai)
    # The same masks as SimpleITK images (score.py's path) give the same numbers.
    img_a, img_b = (_label_map(m, spacing) for m in (a, b))
    assert surface_distances(img_a, img_b) == pytest.approx(ours)
