"""Overlay pictures: outlines painted where the target and prediction boundaries are."""

import numpy as np
import pytest

from spine_lightning.evaluation.overlays import BOTH_RGB, PRED_RGB, TARGET_RGB, mid_slices, outline, overlay_panel


def test_outline_is_the_mask_boundary():
    mask = np.zeros((7, 7), bool)
    mask[1:6, 1:6] = True
    ring = outline(mask)
    assert ring.sum() == 16  # 5x5 square: 25 - 9 interior pixels
    assert not ring[3, 3] and ring[1, 3]


def test_sagittal_slice_puts_superior_at_the_top():
    volume = np.zeros((4, 5, 6))
    volume[-1] = 1.0  # most superior slab (last Z index)
    axial, sagittal = mid_slices(volume)
    assert axial.shape == (5, 6) and sagittal.shape == (4, 5)
    assert sagittal[0].all() and not sagittal[1:].any()


def test_panel_colours_target_prediction_and_agreement():
    shape = (16, 20, 12)  # Z, Y, X
    image = np.full(shape, -1.0, np.float32)  # window low end: black
    target = np.zeros(shape, np.uint8)
    pred = np.zeros(shape, np.uint8)
    target[4:12, 4:12, 3:9] = 1
    pred[4:12, 4:16, 3:9] = 1  # same left edge, reaches further back
    panel = overlay_panel(image, target, pred)
    axial = panel[:20, :12]  # axial mid-slice (Y, X) comes first
    assert panel.dtype == np.uint8 and panel.shape == (20, 12 + 2 + 20, 3)
    assert tuple(axial[8, 3]) == BOTH_RGB  # shared edge (x = 3)
    assert tuple(axial[11, 5]) == TARGET_RGB  # target's back edge, inside the prediction
    assert tuple(axial[15, 5]) == PRED_RGB  # prediction's back edge
    assert tuple(axial[8, 5]) == (0, 0, 0)  # interior stays the CT grey (here black)


def test_panel_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="one shape"):
        overlay_panel(np.zeros((4, 4, 4)), np.zeros((4, 4, 4)), np.zeros((4, 4, 5)))


def test_small_crops_are_enlarged_by_a_whole_factor():
    shape = (8, 10, 6)
    target = np.zeros(shape, np.uint8)
    target[2:6, 2:8, 1:5] = 1
    small = overlay_panel(np.zeros(shape), target, target)
    big = overlay_panel(np.zeros(shape), target, target, min_height=25)
    assert big.shape == (small.shape[0] * 3, small.shape[1] * 3, 3)
    np.testing.assert_array_equal(big[::3, ::3], small)
