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
    out = {k: float(v) for k, v in metrics.compute("test").items()}

    iou_l2 = (6 / 10 + 1.0) / 2
    dice_l2 = (2 * 6 / (8 + 8) + 1.0) / 2
    assert abs(out["test/iou_L2"] - iou_l2) < 1e-6
    assert abs(out["test/dice_L2"] - dice_l2) < 1e-6
    assert out["test/iou_L5"] == 0.0
    assert "test/iou_L3" not in out  # no crop of that level was seen
    assert abs(out["test/iou_mean"] - (iou_l2 + 0.0) / 2) < 1e-6
    metrics.reset()  # a new epoch: no level seen yet
    assert metrics.compute("test") == {}
    metrics.update(preds[2:], target[2:], ["L5"])
    assert set(metrics.compute("test")) == {"test/iou_L5", "test/dice_L5", "test/iou_mean", "test/dice_mean"}


def test_one_per_level_rule_for_training_eval_and_the_report():
    """per_level_means: a missed vertebra (0) stays in its level's mean, a non-finite value (no
    surface) is left out, a level without cases is absent; the mean is over present levels. The
    test stage and eval summarise through it and agree on the same cases."""
    import math

    from spine_lightning.evaluation.metrics import per_level_means
    from spine_lightning.evaluation.score import summarise

    rows = [dict(subject="a", level="L2", iou=0.5, dice=2 / 3, assd_mm=1.0, hd95_mm=2.0),
            dict(subject="b", level="L2", iou=1.0, dice=1.0, assd_mm=math.nan, hd95_mm=math.nan),
            dict(subject="a", level="L5", iou=0.0, dice=0.0, assd_mm=math.nan, hd95_mm=math.nan)]
    means = per_level_means(rows, ["L2", "L3", "L5"], dict(iou="iou", assd="assd_mm"), "x")
    assert means == {"x/iou_L2": 0.75, "x/iou_L5": 0.0, "x/iou_mean": 0.375, "x/assd_L2": 1.0, "x/assd_mean": 1.0}
    eval_means = summarise(rows, ["L2", "L3", "L5"])
    assert {k: eval_means[f"eval/{k[2:]}"] for k in means} == means
    # the test stage: same IoUs from crops through torchmetrics
    target = torch.zeros(3, 2, 2, 2, dtype=torch.long)
    target[:, 0, 0] = 1  # 2 voxels each
    preds = target.clone()  # crop 1 exact: IoU 1
    preds[0, 1, 1] = 1  # crop 0: 2 extra voxels, IoU 2/4
    preds[2] = 0  # crop 2: missed, IoU 0
    metrics = PerLevelMetrics(["L2", "L3", "L5"])
    metrics.update(preds, target, ["L2", "L2", "L5"])
    stage = {k: float(v) for k, v in metrics.compute("x").items()}
    assert {k: stage[k] for k in ("x/iou_L2", "x/iou_L5", "x/iou_mean")} == {
        k: means[k] for k in ("x/iou_L2", "x/iou_L5", "x/iou_mean")}
