"""Whole-CT prediction back onto the input grid.

Each level is cropped around its centroid as in training (`crops.crop_frame`; past the scan's edge
the crop repeats the scan's border voxels, see `crops.extend_past_edges`), segmented,
and its foreground probability resampled by SimpleITK from the crop frame onto the part of the
input grid the crop covers, so geometry is exact for any origin, spacing or direction. Voxels that
two neighbouring crops both claim go to the level with the higher probability, and each level
keeps only its largest connected component. Memory grows with
the input grid only through two uint8 maps: labels, and the winning probability (in 1/255).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage

from spine_lightning.data.crops import crop_ct, crop_frame, frame_corners_mm
from spine_lightning.data.intensity import window
from spine_lightning.data.labels import label_value
from spine_lightning.data.scan import Scan, as_scan

PROBABILITY_SCALE = 255  # probabilities are kept as uint8 on the (possibly huge) input grid
DEFAULT_PREPROCESSING = dict(spacing=1.0, crop_size=[96, 112, 64], window_hu=[-1000.0, 2000.0])


@dataclass
class Prediction:
    """Label map (VerSe numbering, on the input grid) and the probability that won each voxel."""

    label: sitk.Image
    probability: np.ndarray  # [z, y, x] uint8, probability * PROBABILITY_SCALE; 0 where unclaimed
    centres: dict[str, tuple[float, float, float]] = field(default_factory=dict)


def preprocessing_of(module) -> dict:
    """Crop settings stored in the checkpoint (older checkpoints: the paper's defaults)."""
    return {**DEFAULT_PREPROCESSING, **(module.hparams.get("preprocessing") or {})}


def covered_region(scan: Scan, frame: dict) -> tuple[list[int], list[int]] | None:
    """Index start and size of the input-grid box that holds the crop frame (None if outside)."""
    idx = scan.physical_to_index(frame_corners_mm(frame))
    lo = np.maximum(np.floor(idx.min(axis=0)).astype(int) - 1, 0)
    hi = np.minimum(np.ceil(idx.max(axis=0)).astype(int) + 1, np.array(scan.size) - 1)
    if np.any(hi < lo):
        return None
    return lo.tolist(), (hi - lo + 1).tolist()


def keep_largest_component(labels: np.ndarray, best: np.ndarray, value: int) -> None:
    """A vertebra is one object: drop the level's fragments outside its largest component (in place)."""
    parts, n = ndimage.label(labels == value, structure=np.ones((3, 3, 3)))
    if n > 1:
        sizes = np.bincount(parts.ravel())[1:]  # no second grid-sized array
        stray = (parts > 0) & (parts != 1 + int(np.argmax(sizes)))
        labels[stray], best[stray] = 0, 0


@torch.no_grad()
def crop_probability(
    module, x: torch.Tensor, mirror_lr: bool = False, plain: torch.Tensor | None = None
) -> torch.Tensor:
    """P(vertebra) [z, y, x] of one windowed crop x [1, 1, z, y, x].

    `mirror_lr`: also segment the left-right mirrored crop (training mirrors crops too) and average
    the two, nnU-Net's test-time mirroring restricted to the one axis that training mirrors.
    `plain`: this crop's unmirrored probability, already computed (see `foreground_probability`).
    """
    prob = torch.softmax(module(x), dim=1)[0, 1] if plain is None else plain
    if mirror_lr:  # X (right -> left) is the last axis of [z, y, x]
        prob = 0.5 * (prob + torch.softmax(module(x.flip(-1)), dim=1)[0, 1].flip(-1))
    return prob


def foreground_probability(
    module, image: sitk.Image, frame: dict, window_hu, mirror_lr: bool = False, memo: dict | None = None
) -> sitk.Image:
    """P(vertebra) on the crop frame, as a float32 SimpleITK image with the frame's geometry.

    `memo` (one scan, one model): the unmirrored probability of every crop segmented so far, by
    frame; a crop segmented before (the last refinement crop, when it is the final one) is not
    run through the network again.
    """
    hu = crop_ct(image, frame, outside="repeat")
    x = torch.from_numpy(window(hu, *window_hu))[None, None].to(module.device)
    key = tuple(tuple(np.round(np.asarray(frame[k], float), 6)) for k in ("origin", "size", "spacing", "direction"))
    plain = None if memo is None else memo.get(key)
    if plain is None:
        plain = crop_probability(module, x)
        if memo is not None:
            memo[key] = plain
    prob = crop_probability(module, x, mirror_lr, plain).float().cpu().numpy()
    out = sitk.GetImageFromArray(prob)
    out.SetOrigin(frame["origin"])
    out.SetSpacing(frame["spacing"])
    out.SetDirection(frame["direction"])
    return out


def largest_part(prob: sitk.Image) -> sitk.Image | None:
    """The largest connected component of `prob > 0.5`, a mask on the crop frame (None if empty)."""
    parts = sitk.RelabelComponent(sitk.ConnectedComponent(prob > 0.5, True), sortByObjectSize=True)
    return parts == 1 if sitk.GetArrayViewFromImage(parts).max() >= 1 else None


def centroid(mask: sitk.Image) -> tuple[float, float, float]:
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(mask)
    return tuple(stats.GetCentroid(1))


def segmented_vertebra(module, scan: Scan, centre, memo: dict | None) -> sitk.Image | None:
    """The vertebra the network segments in the crop centred at `centre`: the largest part of its
    mask (None: nothing, or the crop lies outside the scan)."""
    prep = preprocessing_of(module)
    frame = crop_frame(tuple(centre), prep["crop_size"], prep["spacing"])
    region = covered_region(scan, frame)
    if region is None:
        return None
    return largest_part(foreground_probability(module, scan.region(*region), frame, prep["window_hu"], memo=memo))


def predict_levels(
    module,
    image: sitk.Image | Scan,
    centres: dict[str, tuple[float, float, float]],
    mirror_lr: bool = False,
    memo: dict | None = None,
) -> Prediction:
    """Segment every level in `centres` (level name → physical centroid, mm) onto `image`'s grid.
    Unnamed vertebrae ('vertebra1', ...) are written as 101, 102, ... (`labels.label_value`).
    `mirror_lr`: test-time mirroring (see `foreground_probability`), twice the network's time.
    `memo`: that of the refinement (`centres.automatic_centres`), whose last crops it reuses.

    Only the part of the scan under each crop is read (see `scan.Scan`).
    """
    scan = as_scan(image)
    prep = preprocessing_of(module)
    size_zyx = scan.size[::-1]
    labels = np.zeros(size_zyx, np.uint8)
    best = np.zeros(size_zyx, np.uint8)
    boxes = {}
    for level, centre in centres.items():
        frame = crop_frame(centre, prep["crop_size"], prep["spacing"])
        region = covered_region(scan, frame)
        if region is None:
            continue
        start, size = region
        prob_img = foreground_probability(module, scan.region(start, size), frame, prep["window_hu"], mirror_lr, memo)
        on_grid = sitk.Resample(
            prob_img,
            scan.grid(start, size),
            sitk.Transform(),
            sitk.sitkLinear,
            0.0,
            sitk.sitkFloat32,
        )
        prob = sitk.GetArrayViewFromImage(on_grid)  # a view: no second copy of a large region
        box = tuple(slice(s, s + n) for s, n in zip(start[::-1], size[::-1], strict=True))
        # A voxel joins this level if the network says so and no earlier level holds it more surely.
        quantised = np.round(prob * PROBABILITY_SCALE).astype(np.uint8)
        wins = (prob > 0.5) & (quantised > best[box])
        labels[box][wins] = label_value(level)
        best[box][wins] = quantised[wins]
        boxes[level] = box
    for level, box in boxes.items():
        keep_largest_component(labels[box], best[box], label_value(level))
    out = sitk.GetImageFromArray(labels)
    out.SetSpacing(scan.spacing)
    out.SetOrigin(scan.origin)
    out.SetDirection(scan.direction)
    return Prediction(out, best, dict(centres))
