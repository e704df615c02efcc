import torch

from spine_lightning.evaluation.metrics import PerLevelMetrics


def test_per_level_iou_and_dice_equal_a_hand_computation():
    target = torch.zeros(3, 4, 4, 4, dtype=torch.long)
    preds = torch.zeros_like(target)
    # Case 0 (L2): target 8 voxels, prediction 6 of them + 2 extra → I=6, U=10.
    target[0, 0, :2, :4] = 1
    preds[0, 0, :2, :3] = 1
    preds[0, 1, 0, :2] = 1
    # Case 1 (L2): exact → IoU 1.
    target[1, 2, 2, 2] = 1
    preds[1, 2, 2, 2] = 1
    # Case 2 (L5): vertebra missed entirely → IoU 0 (counted, not dropped).
    target[2, 3, 3, :] = 1

    metrics = PerLevelMetrics(["L2", "L3", "L5"])
    metrics.update(preds, target, ["L2", "L2", "L5"])
    out = {k: v.item() for k, v in metrics.compute("test").items()}

    iou_l2 = (6 / 10 + 1.0) / 2
    dice_l2 = (2 * 6 / (8 + 8) + 1.0) / 2
    assert abs(out["test/iou_L2"] - iou_l2) < 1e-6
    assert abs(out["test/dice_L2"] - dice_l2) < 1e-6
    assert out["test/iou_L5"] == 0.0
    assert "test/iou_L3" not in out  # no crop of that level was seen
    assert abs(out["test/iou_mean"] - (iou_l2 + 0.0) / 2) < 1e-6
