"""Training-crop augmentation with TorchIO (config group `augmentation=none|default|strong`).

Why TorchIO: it transforms the CT crop and its voxel maps together as one `Subject`, with the
image as a `ScalarImage` (linear interpolation, intensity transforms apply) and the target and
boundary weights as `LabelMap`s (nearest interpolation, intensity transforms skip them), so the
label stays binary and every map moves with the image; it works in physical space (mm spacing),
so rotation, scaling, blur and slice thickness are given in mm, not voxels.

Crops are numpy arrays indexed [z, y, x] (crops.py); they are handed to TorchIO as they are (a
transpose costs as much as a transform), so its spatial axes 0, 1, 2 are our Z (foot->head),
Y (front->back) and X (right->left); configs give rotations in X, Y, Z order. No transform here
flips anything (the left-right mirror is `data.flip_lr`, done by CropDataset); rotations stay
within +-30 degrees, so head and foot are never swapped.

Order: bone density (needs HU), spatial (affine, elastic, thick slices), a scan's edge, blur, noise and
shift in HU;
then gamma and brightness/contrast in the window's [0, 1] scale (they need a fixed range, as on
nnU-Net's normalised intensities), mapped back to HU, only when they fire, so that CropDataset
windows as without augmentation.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torchio as tio
from omegaconf import DictConfig, OmegaConf
from torchio.transforms import IntensityTransform
from torchio.transforms.augmentation import RandomTransform

from spine_lightning.core.errors import ConfigError

SOFT_TISSUE_HU, DENSE_BONE_HU = 60.0, 1000.0
BITS = "binary_maps"  # the label map that carries the binary maps through `augment`


class RandomBoneDensity(RandomTransform, IntensityTransform):
    """Bone mineral density shift: cancellous bone from osteoporotic (~50-110 HU) to dense (~300).

    A monotone piecewise-linear HU remap that keeps everything up to soft tissue (60 HU) and from
    dense cortex (1000 HU) up, and multiplies the distance above 60 HU of the band in between
    (cancellous bone, the partial-volume rim of the cortex) by a random `factor`; 60-1000 HU is
    bone in a vertebra crop, so no mask is needed. A 200 HU core becomes 95 HU at factor 0.25 and
    270 HU at 1.5; the ordering of intensities, hence every edge, is kept.
    """

    def __init__(self, factor=(0.25, 1.5), knee_hu: float = 400.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = self._parse_range(factor, "factor", min_constraint=0)
        self.knee_hu = float(knee_hu)  # top of the scaled band; from here the map rejoins identity at 1000 HU

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        factor = self.sample_uniform(*self.factor)
        knee = SOFT_TISSUE_HU + factor * (self.knee_hu - SOFT_TISSUE_HU)
        xp = [SOFT_TISSUE_HU, self.knee_hu, DENSE_BONE_HU]
        fp = [SOFT_TISSUE_HU, min(knee, DENSE_BONE_HU - 1.0), DENSE_BONE_HU]
        for image in self.get_images(subject):
            image.set_data(_remap(image.data.float(), xp, fp))
        return subject


def _remap(hu: torch.Tensor, xp, fp) -> torch.Tensor:
    """Piecewise-linear map through the three points (xp, fp), identity outside [xp[0], xp[-1]]:
    the input plus the part of it in each band times that band's change of slope (whole-tensor
    arithmetic, three times faster than np.interp on the voxels in the band)."""
    slopes = [(fp[i + 1] - fp[i]) / (xp[i + 1] - xp[i]) for i in (0, 1)]
    out = hu.clone()
    for i, slope in enumerate(slopes):
        out += (hu - xp[i]).clamp_(0.0, xp[i + 1] - xp[i]).mul_(slope - 1.0)
    return out


class RandomBrightnessContrast(RandomTransform, IntensityTransform):
    """Multiplicative brightness, then contrast about the mean clipped to the original range, as in
    nnU-Net; for intensities on a fixed [0, 1] scale (TorchIO has no multiplicative brightness)."""

    def __init__(self, factor=(0.75, 1.25), **kwargs):
        super().__init__(**kwargs)
        self.factor = self._parse_range(factor, "factor", min_constraint=0)

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        brightness, contrast = self.sample_uniform(*self.factor), self.sample_uniform(*self.factor)
        for image in self.get_images(subject):
            x = image.data.float() * brightness  # a new tensor: the steps below work in place
            lo, hi, mean = x.min(), x.max(), x.mean()
            image.set_data(x.sub_(mean).mul_(contrast).add_(mean).clamp_(lo, hi))
        return subject


class RandomIntensityShift(RandomTransform, IntensityTransform):
    """An offset added to every voxel (HU): another scanner's calibration or reconstruction kernel.
    TorchIO has no additive shift."""

    def __init__(self, shift_hu=(-50.0, 50.0), **kwargs):
        super().__init__(**kwargs)
        self.shift_hu = self._parse_range(shift_hu, "shift_hu")

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        shift = self.sample_uniform(*self.shift_hu)
        for image in self.get_images(subject):
            image.set_data(image.data.float() + shift)
        return subject


class RandomScanEdge(RandomTransform):
    """A tight scan's edge through the vertebra: beyond a plane `distance_mm` from the crop's centre
    (across one of `axes`, on either side) the crop becomes the plane's last slice repeated, as
    prediction fills a crop past a scan's edge, and leaves the inside-the-scan mask, so that the loss
    skips it. Real scans are often cut through a vertebra (a lumbar scan's edge through L5 or L1);
    the training scans and the phantoms hardly ever are. The mask is the map `valid`, or its bit in
    the packed map of `augment` (the subject's `BIT_NAMES` lists the bits)."""

    def __init__(self, distance_mm=(8.0, 30.0), axes=(0,), **kwargs):
        super().__init__(**kwargs)
        self.distance_mm = self._parse_range(distance_mm, "distance_mm", min_constraint=0)
        self.axes = tuple(int(a) for a in axes)

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        axis = self.axes[int(torch.randint(len(self.axes), ()))]
        image = subject["image"]
        n, step = image.shape[1 + axis], float(image.spacing[axis])
        offset = min(round(self.sample_uniform(*self.distance_mm) / step), n // 2)
        edge = n // 2 + offset if torch.rand(()) < 0.5 else n // 2 - offset - 1  # the last slice kept
        beyond = [slice(None)] * 4
        beyond[1 + axis] = slice(edge + 1, None) if edge >= n // 2 else slice(None, edge)
        last = [slice(None)] * 4
        last[1 + axis] = slice(edge, edge + 1)
        data = image.data.clone()
        data[tuple(beyond)] = data[tuple(last)]  # broadcast along the cut axis
        image.set_data(data)
        packed = subject.get(BITS)
        mask = packed if packed is not None else subject.get("valid")
        if mask is not None:
            keep = ~(1 << subject["BIT_NAMES"].index("valid")) & 0xFF if packed is not None else 0
            data = mask.data.clone()  # resampled maps may come back as floats holding integers
            data[tuple(beyond)] = (data[tuple(beyond)].long() & keep).to(data.dtype)
            mask.set_data(data)
        return subject


class LinearRescale(IntensityTransform):
    """Intensities clipped to `in_range` and mapped linearly onto `out_range`. TorchIO's
    RescaleIntensity does the same with a given `in_min_max`, but computes percentiles of every
    voxel first (np.percentile: about 20 ms per 1 mm crop, twice per gamma or contrast draw)."""

    def __init__(self, in_range, out_range, **kwargs):
        super().__init__(**kwargs)
        self.in_range, self.out_range = tuple(map(float, in_range)), tuple(map(float, out_range))
        self.args_names = ["in_range", "out_range"]

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        (a, b), (c, d) = self.in_range, self.out_range
        for image in self.get_images(subject):
            image.set_data(image.data.float().clamp(a, b).sub_(a).mul_((d - c) / (b - a)).add_(c))
        return subject


def _range(value):
    return tuple(float(v) for v in value) if isinstance(value, list | tuple) else float(value)


def _axis(name, entry: str) -> int:
    """TorchIO's axis of a direction named as in the configs: Z (foot-head: axial slices), Y
    (front-back: coronal), X (left-right: sagittal, as in VerSe scans acquired 1 x 1 x 3 mm sagittal)."""
    axes = {"Z": 0, "Y": 1, "X": 2}
    if str(name).upper() not in axes:
        raise ConfigError(f"augmentation.{entry}.axes", name, "a list of X, Y, Z")
    return axes[str(name).upper()]


def build_augmentation(config: Mapping | None, window_hu=(-1000.0, 2000.0)) -> tio.Compose | None:
    """The TorchIO pipeline of an `augmentation` config; None (no transform) when it is empty.

    Each entry is optional (absent or null: off) and carries its probability `p`; see
    conf/augmentation/default.yaml for the meaning of every setting.
    """
    if isinstance(config, DictConfig):  # Hydra may pass it unconverted (e.g. under data=mix's _convert_)
        config = OmegaConf.to_container(config, resolve=True)
    config = {k: v for k, v in dict(config or {}).items() if v is not None}
    known = {"bone_density", "affine", "elastic", "low_resolution", "scan_edge", "blur", "noise", "shift", "gamma",
             "brightness_contrast"}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ConfigError(f"augmentation.{unknown[0]}", config[unknown[0]], "one of " + ", ".join(sorted(known)))
    low, high = (float(w) for w in window_hu)

    def in_window(transform, p):  # the window's clip, as CropDataset's, then [0, 1], and back to HU
        return tio.Compose([LinearRescale((low, high), (0.0, 1.0)), transform,
                            LinearRescale((0.0, 1.0), (low, high))], p=p)

    transforms = []
    if c := config.get("bone_density"):
        transforms.append(RandomBoneDensity(_range(c["factor"]), p=c["p"]))
    if c := config.get("affine"):
        degrees = _range(c["degrees"])  # X, Y, Z -> TorchIO's axes Z, Y, X
        transforms.append(tio.RandomAffine(scales=_range(c["scales"]), isotropic=True, default_pad_value="mean",
                                           degrees=degrees[::-1] if isinstance(degrees, tuple) else degrees, p=c["p"]))
    if c := config.get("elastic"):
        transforms.append(tio.RandomElasticDeformation(num_control_points=int(c.get("control_points", 7)),
                                                       max_displacement=float(c["max_displacement_mm"]), p=c["p"]))
    if c := config.get("low_resolution"):  # thick slices: down- then up-sampled along one of `axes`
        axes = tuple(_axis(a, "low_resolution") for a in c.get("axes", ["Z"]))
        transforms.append(tio.RandomAnisotropy(axes=axes, downsampling=_range(c["downsampling"]), p=c["p"]))
    if c := config.get("scan_edge"):  # after the spatial transforms: a scan's edge is a plane of the scan's grid
        axes = tuple(_axis(a, "scan_edge") for a in c.get("axes", ["Z"]))
        transforms.append(RandomScanEdge(_range(c["distance_mm"]), axes, p=c["p"]))
    if c := config.get("blur"):
        transforms.append(tio.RandomBlur(std=_range(c["std_mm"]), p=c["p"]))
    if c := config.get("noise"):
        transforms.append(tio.RandomNoise(std=_range(c["std_hu"]), p=c["p"]))
    if c := config.get("shift"):
        transforms.append(RandomIntensityShift(_range(c["shift_hu"]), p=c["p"]))
    if c := config.get("gamma"):
        transforms.append(in_window(tio.RandomGamma(log_gamma=tuple(float(np.log(g)) for g in c["range"])), c["p"]))
    if c := config.get("brightness_contrast"):
        transforms.append(in_window(RandomBrightnessContrast(_range(c["factor"])), c["p"]))
    for t in transforms:  # `augment` hands over its own copies: no deep copy of the subject per transform
        for step in [t, *getattr(t, "transforms", [])]:
            step.copy = False
    return tio.Compose(transforms, copy=False) if transforms else None


def augment(transform, hu: np.ndarray, spacing: float = 1.0, **maps: np.ndarray):
    """Apply `transform` to a HU crop and its voxel maps (target, weights, ...), all [z, y, x];
    returns the HU crop (float32) and the maps (their own dtypes), transformed together. The inputs
    are copied once, never modified. Where a rotation or scaling pads, maps are 0: a weight of 0
    keeps those invented voxels out of the loss.

    Binary uint8 maps (target, inside-the-scan mask) travel as the bits of one label map: TorchIO
    resamples and converts every image on its own (about 14 ms each for an affine of a 1 mm crop),
    and a nearest-neighbour resampling of the bits is that of each map, padding 0 included. So does
    a float map of two values, 1 and another (the boundary weights): as the bit of the other value
    and a bit that is 1 wherever nothing was padded."""
    affine = np.diag([spacing, spacing, spacing, 1.0])
    binary = {k: v for k, v in maps.items() if v.dtype == np.uint8 and v.max(initial=0) <= 1}
    two_valued = {k: float(v.max(initial=1.0)) for k, v in maps.items() if v.dtype == np.float32 and _ones_and(v)}
    if two_valued and len(binary) + len(two_valued) < 8:
        binary.update({k: (maps[k] != 1.0).view(np.uint8) for k in two_valued})
        binary["not_padded"] = np.ones(hu.shape, np.uint8)
    else:
        two_valued = {}
    binary = dict(list(binary.items())[:8])
    packed = {BITS: sum(v << np.uint8(i) for i, v in enumerate(binary.values()))} if len(binary) > 1 else {}
    others = {k: v for k, v in maps.items() if not (packed and k in binary)}

    def tensor(a, dtype=None):
        return torch.from_numpy(np.array(a, dtype=dtype))[None]

    subject = tio.Subject(image=tio.ScalarImage(tensor=tensor(hu, np.float32), affine=affine),
                          **{k: tio.LabelMap(tensor=tensor(v), affine=affine) for k, v in {**others, **packed}.items()},
                          BIT_NAMES=list(binary) if packed else [])
    out = transform(subject)

    def array(name, dtype):
        return np.ascontiguousarray(out[name].data[0].numpy(), dtype=dtype)

    result = {k: array(k, v.dtype) for k, v in others.items()}
    if packed:
        bits = array(BITS, np.uint8)
        result.update({k: (bits >> np.uint8(i)) & np.uint8(1) for i, k in enumerate(binary)})
        for k, value in two_valued.items():  # 0 where padded, as a resampled float map would be
            result[k] = np.where(result[k], np.float32(value), np.float32(1.0)) * result["not_padded"]
    return array("image", np.float32), {k: result[k] for k in maps}


def _ones_and(weights: np.ndarray) -> bool:
    """Whether a float map holds 1.0 and at most one other value (boundary weights)."""
    return bool(np.all((weights == 1.0) | (weights == weights.max(initial=1.0))))
