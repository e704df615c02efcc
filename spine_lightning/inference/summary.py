"""Per-level summaries of a prediction on the input grid: what the report says of each vertebra."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from spine_lightning.data.labels import label_value
from spine_lightning.inference.segment import PROBABILITY_SCALE, Prediction


def level_summaries(pred: Prediction, levels) -> dict[str, tuple[dict, sitk.Image]]:
    """Per level present: volume, centroid, bounding box and mean probability on the input grid,
    and the level's mask cut to its bounding box (same physical geometry, a fraction of the grid)."""
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(pred.label)
    present, out = set(stats.GetLabels()), {}
    for level in levels:
        value = label_value(level)
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


