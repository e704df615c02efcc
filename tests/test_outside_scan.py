"""Voxels of a crop that lie past the scan's edge (the border repeated or air, not anatomy) count in neither the
loss nor the metrics: the `valid` mask of every crop, on real scans cropped tight by their source."""

import warnings

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from spine_lightning.data.cache import CropCache
from spine_lightning.data.crops import AIR_HU, crop_frame, inside_scan, resample_to_frame
from spine_lightning.data.datamodule import CropDataset, preprocess_subject
from spine_lightning.data.sources import asset_subjects
from spine_lightning.training.losses import weighted_cross_entropy
from spine_lightning.training.module import SpineSegmentationModule

NET = dict(_target_="spine_lightning.models.GCNResidualFCN", width=2, levels=3, convs=1, kernel=3, gcn_kernel=3)
SIZE, SPACING = (48, 48, 32), 1.5


@pytest.fixture(scope="module")
def edge_crop():
    """tptbox's L2: its scan cuts it, so the L2-centred crop reaches past the scan."""
    (subject,) = asset_subjects(names=["tptbox"])
    (crop,) = preprocess_subject(subject, ["L2"], SIZE, SPACING)
    return subject, crop


def test_a_crop_at_the_scan_edge_is_valid_exactly_inside_the_scan(edge_crop):
    subject, crop = edge_crop
    image, _ = subject.load()
    ones = sitk.Cast(image * 0 + 1, sitk.sitkUInt8)  # the scan's extent as SimpleITK resamples it
    inside = sitk.GetArrayFromImage(resample_to_frame(ones, crop["frame"], is_label=True))
    valid = crop["valid"]
    assert 0 < valid.mean() < 1  # the crop does reach past the scan
    np.testing.assert_array_equal(valid, inside)
    assert not crop["target"][valid == 0].any()
    assert np.mean(crop["hu"][valid == 0] == AIR_HU) < 0.5  # the scan's border repeated, as prediction does
    (air_crop,) = preprocess_subject(subject, ["L2"], SIZE, SPACING, outside="air")
    assert np.all(air_crop["hu"][valid == 0] == AIR_HU)
    np.testing.assert_allclose(air_crop["hu"][valid == 1], crop["hu"][valid == 1], atol=1e-3)


def test_an_oblique_scan_gives_the_mask_simpleitk_resampling_gives():
    image = sitk.Image(40, 30, 20, sitk.sitkUInt8) + 1
    image.SetSpacing((0.9, 1.3, 2.7))
    image.SetOrigin((3.3, -7.1, 11.0))
    image.SetDirection(sitk.VersorTransform((0.3, 0.2, 0.9), 0.4).GetMatrix())
    centre = image.TransformContinuousIndexToPhysicalPoint((35.2, 4.7, 17.1))  # near a corner
    frame = crop_frame(centre, (30, 28, 26), 1.1)
    expected = sitk.GetArrayFromImage(resample_to_frame(image, frame, is_label=True))
    assert 0 < expected.mean() < 1
    assert (inside_scan(image, frame) != expected).mean() < 1e-3  # ties on the boundary aside


def test_the_cache_stores_the_mask_and_the_dataset_carries_it(edge_crop, tmp_path):
    subject, crop = edge_crop
    cache = CropCache(tmp_path)
    cache.fill(subject, ["L2"], SPACING, SIZE, 1.0)
    record = cache.load(cache.keys(subject, ["L2"], SPACING, SIZE)["L2"], 1.0)
    record["source"] = "real"
    item = CropDataset([record], (-1000, 2000), 1.0)[0]
    np.testing.assert_array_equal(item["valid"].numpy(), crop["valid"])
    assert item["source"] == "real"


def test_the_loss_is_a_mean_over_the_voxels_inside_the_scan():
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 2, (2, 6, 7, 8), generator=g)
    valid = torch.ones_like(target, dtype=torch.uint8)
    valid[:, :2] = 0
    logits = torch.randn(2, 2, 6, 7, 8, generator=g)
    weights = 1 + torch.rand(target.shape, generator=g)
    changed = logits.clone()
    changed[:, :, :2] = 10 * torch.randn(2, 2, 2, 7, 8, generator=g)  # anything at all past the edge
    loss = weighted_cross_entropy(logits, target, weights, valid)
    assert torch.allclose(loss, weighted_cross_entropy(changed, target, weights, valid))
    inside = (slice(None), slice(2, None))
    expected = weighted_cross_entropy(logits[:, :, 2:], target[inside], weights[inside])
    assert torch.allclose(loss, expected)  # normalised by the valid voxels, not by all of them


def test_foreground_predicted_past_the_scan_costs_nothing_in_the_metrics(edge_crop):
    _, crop = edge_crop
    batch = {k: v[None] for k, v in CropDataset([crop], (-1000, 2000), 1.0)[0].items() if torch.is_tensor(v)}
    batch.update(level=["L2"], subject=["tptbox"])
    outside = batch["valid"] == 0
    module = SpineSegmentationModule(net=NET, levels=["L2"])
    # a network that finds the vertebra exactly and calls everything past the scan's edge bone
    logits = torch.stack([(batch["target"] == 0) & ~outside, (batch["target"] == 1) | outside], 1).float()
    module.forward = lambda x: logits
    scores = {}
    for name, with_mask in (("masked", True), ("unmasked", False)):
        if not with_mask:
            batch.pop("valid")
        module.val_metrics.reset()
        with warnings.catch_warnings():  # self.log outside a Trainer warns
            warnings.simplefilter("ignore")
            module._evaluate(batch, module.val_metrics, "val")
        scores[name] = float(module.val_metrics.compute("val")["val/iou_L2"])
    assert scores["masked"] == pytest.approx(1.0)
    assert scores["unmasked"] < 0.9  # the same prediction, scored without the mask
