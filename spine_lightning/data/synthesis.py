"""Real shapes, synthetic images: CT-like volumes drawn on real vertebra label maps (VerSe masks).

Every vertebra of the map gets a cortical shell (its outer 1-2 mm, 300-1000 HU, as partial volume
makes a real mask's rim look) around a cancellous core (50-300 HU per subject, osteoporotic
50-110 included, +-10 % per vertebra); discs (70-110 HU) fill the gap between neighbouring
vertebrae; soft tissue (20-60 HU) with fat (about -100 HU) inside a body ellipse, a subcutaneous fat
layer, air outside; then blur (slice thickness) and noise. The label returned is the real mask on
its own grid, padded so that crops see tissue rather than the end of the volume: shapes are real,
intensities random, so the network cannot lean on one scanner's or phantom's grey values.

Written with numpy/scipy rather than torchio.RandomLabelsToImage: that draws one Gaussian per label
value, while CT needs tissue classes the mask does not hold (shell, core, disc, fat) in HU ranges.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage

from spine_lightning.core.errors import SpineError

SYNTHESIS_VERSION = 1  # part of the cache key: change it when the images change
AIR_HU, FAT_HU = -1000.0, -100.0


def default_label_maps_dir() -> Path:
    """The VerSe masks shipped with the package."""
    return Path(__file__).resolve().parent / "assets" / "verse"


@dataclass(frozen=True)
class Ranges:
    """HU and mm ranges the synthetic images are drawn from (uniform)."""

    core_hu: tuple[float, float] = (50.0, 300.0)
    cortex_hu: tuple[float, float] = (300.0, 1000.0)
    shell_mm: tuple[float, float] = (1.0, 2.0)
    disc_hu: tuple[float, float] = (70.0, 110.0)
    disc_span_mm: tuple[float, float] = (8.0, 14.0)  # a disc voxel's distances to both vertebrae add up to less
    soft_hu: tuple[float, float] = (20.0, 60.0)
    noise_hu: tuple[float, float] = (5.0, 40.0)
    blur_mm: tuple[float, float] = (0.3, 0.8)  # in-plane Gaussian sigma
    slice_blur_mm: tuple[float, float] = (0.4, 1.4)  # along the head-foot axis: 1-3 mm slices
    pad_mm: float = 30.0  # crops reach 30-50 mm past a vertebra; beyond the pad they read air


def physical_xy(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Physical x and y (mm, LPS) of every voxel, as arrays broadcastable to the [k, j, i] array."""
    size = image.GetSize()
    direction = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())
    index = [np.arange(n, dtype=np.float32).reshape([-1 if a == 2 - d else 1 for a in range(3)])
             for d, n in enumerate(size)]  # index i, j, k shaped along array axes 2, 1, 0
    origin = np.array(image.GetOrigin())
    x, y = (origin[c] + direction[c, 0] * index[0] + direction[c, 1] * index[1] + direction[c, 2] * index[2]
            for c in (0, 1))
    return x, y


def _head_foot_axis(image: sitk.Image) -> int:
    """The array axis closest to the patient's z (head-foot)."""
    direction = np.array(image.GetDirection()).reshape(3, 3)
    return 2 - int(np.argmax(np.abs(direction[2])))


def _smooth_noise(rng: np.random.Generator, shape, sigma: float, coarse: int = 4) -> np.ndarray:
    """Unit-variance smooth noise (sigma in voxels): drawn `coarse` times coarser, smoothed, then
    interpolated trilinearly (torch: much faster than scipy's zoom on large volumes)."""
    small = tuple(-(-n // coarse) + 1 for n in shape)
    field = ndimage.gaussian_filter(rng.standard_normal(small, dtype=np.float32), sigma / coarse)
    field = torch.nn.functional.interpolate(torch.from_numpy(field)[None, None], size=tuple(shape),
                                            mode="trilinear", align_corners=False)[0, 0].numpy()
    return field / (field.std() + 1e-6)


def _grow(box: tuple[slice, ...], margin, shape) -> tuple[slice, ...]:
    return tuple(slice(max(0, b.start - m), min(n, b.stop + m)) for b, m, n in zip(box, margin, shape))


def _union(a: tuple[slice, ...], b: tuple[slice, ...]) -> tuple[slice, ...]:
    return tuple(slice(min(p.start, q.start), max(p.stop, q.stop)) for p, q in zip(a, b))


def synthesize(label: sitk.Image, seed, ranges: Ranges = Ranges()) -> tuple[sitk.Image, sitk.Image]:
    """CT-like image (int16 HU) and the padded label map (uint8) of one draw on `label`."""
    rng = np.random.default_rng(seed)
    pad = [int(np.ceil(ranges.pad_mm / s)) for s in label.GetSpacing()]
    label = sitk.ConstantPad(sitk.Cast(label, sitk.sitkUInt8), pad, pad, 0)
    lab = sitk.GetArrayFromImage(label)
    if not lab.any():
        raise SpineError("synthesis: the label map is empty")
    spacing = np.array(label.GetSpacing()[::-1])
    boxes = {v + 1: b for v, b in enumerate(ndimage.find_objects(lab)) if b is not None}
    values = sorted(boxes)

    # Body: an axial ellipse around the spine, its back a few cm behind it; fat under the skin.
    x, y = physical_xy(label)
    middle = boxes[values[len(values) // 2]]  # the middle vertebra: the spine's axis
    bone_x, bone_y = (np.broadcast_to(a, lab.shape)[middle][lab[middle] > 0] for a in (x, y))
    half_x, half_y = rng.uniform(120.0, 170.0), rng.uniform(90.0, 130.0)
    back = bone_y.max() + rng.uniform(25.0, 60.0)  # LPS: +y is back; skin behind the spinous process
    centre = (bone_x.mean() + rng.uniform(-10.0, 10.0), back - half_y)
    r = np.sqrt(((x - centre[0]) / half_x) ** 2 + ((y - centre[1]) / half_y) ** 2)
    r = np.broadcast_to(r, lab.shape)
    fat_layer = rng.uniform(8.0, 30.0) / half_y
    hu = rng.uniform(*ranges.soft_hu) + 10.0 * _smooth_noise(rng, lab.shape, 6.0, coarse=4)
    fat = (_smooth_noise(rng, lab.shape, 4.0, coarse=4) > rng.uniform(0.6, 1.4)) | (r > 1.0 - fat_layer)
    hu = np.where(fat, FAT_HU + 15.0 * _smooth_noise(rng, lab.shape, 3.0, coarse=4), hu)
    hu = np.where(r > 1.0, AIR_HU, hu).astype(np.float32)
    texture = _smooth_noise(rng, lab.shape, 1.5, coarse=2)

    # Discs: background voxels between two neighbouring vertebrae (VerSe numbers run head to foot),
    # i.e. whose distances to both add up to less than a span: the whole gap, bulging a little.
    span = rng.uniform(*ranges.disc_span_mm)
    margin = [int(np.ceil(span / s)) for s in spacing]
    disc_hu = rng.uniform(*ranges.disc_hu)
    for upper, lower in zip(values[:-1], values[1:]):
        if lower != upper + 1:
            continue
        box = _grow(_union(boxes[upper], boxes[lower]), margin, lab.shape)
        sub = lab[box]
        gaps = [ndimage.distance_transform_edt(sub != v, sampling=spacing) for v in (upper, lower)]
        disc = (gaps[0] + gaps[1] <= span) & (sub == 0)
        hu[box][disc] = disc_hu + 8.0 * texture[box][disc]

    # Bone: cortex within the shell, rising to it from the core over 1 mm (partial volume).
    core_base, cortex_hu = rng.uniform(*ranges.core_hu), rng.uniform(*ranges.cortex_hu)
    shell = rng.uniform(*ranges.shell_mm) + spacing.min() / 2  # a voxel's distance counts from its centre
    for v in values:
        box = _grow(boxes[v], [1, 1, 1], lab.shape)
        inside = lab[box] == v
        depth = ndimage.distance_transform_edt(inside, sampling=spacing)
        core = core_base * rng.uniform(0.9, 1.1)
        rim = np.clip(shell + 1.0 - depth, 0.0, 1.0)  # 1 in the shell, 0 from 1 mm deeper
        bone = core + (cortex_hu - core) * rim + 0.15 * core * texture[box]
        hu[box][inside] = bone[inside]

    # Resolution and noise: Gaussian point spread (thicker along head-foot), then scanner noise.
    sigma_mm = np.full(3, rng.uniform(*ranges.blur_mm))
    sigma_mm[_head_foot_axis(label)] = rng.uniform(*ranges.slice_blur_mm)
    hu = ndimage.gaussian_filter(hu, sigma_mm / spacing)
    hu += rng.uniform(*ranges.noise_hu) * rng.standard_normal(hu.shape, dtype=np.float32)

    image = sitk.GetImageFromArray(np.clip(np.round(hu), -1024, 3071).astype(np.int16))
    image.CopyInformation(label)
    return image, label


@dataclass(frozen=True)
class SyntheticSubject:
    """One synthetic image on one real label map; everything follows from the file and the seed."""

    id: str
    path: str
    seed: int
    split: str | None = None
    ranges: Ranges = Ranges()

    def load(self) -> tuple[sitk.Image, sitk.Image]:
        return synthesize(sitk.ReadImage(self.path), self.seed, self.ranges)

    def source_files(self) -> list[str]:
        return [self.path]  # its content keys the preprocessing cache

    def cache_key(self) -> str:
        return json.dumps(dict(synthetic=SYNTHESIS_VERSION, seed=self.seed, ranges=str(self.ranges)))

    @property
    def label_source(self) -> str:
        return self.path


def label_map_files(label_maps_dir=None) -> list[Path]:
    """VerSe vertebra masks (`*_seg-vert_msk.nii.gz`) in the folder or its sub-folders."""
    root = Path(label_maps_dir).expanduser() if label_maps_dir else default_label_maps_dir()
    files = sorted(root.rglob("*_seg-vert_msk.nii.gz"), key=lambda p: p.name)
    if not files:
        raise SpineError(f"{root}: no VerSe mask *_seg-vert_msk.nii.gz (synthetic data)")
    return files


def synthetic_subjects(label_maps_dir=None, num_per_map: int = 8, seed: int = 0, split=None,
                       exclude=()) -> list[SyntheticSubject]:
    """`num_per_map` synthetic subjects on every mask of `label_maps_dir` (default: the package's
    VerSe assets). `split`: one split for all (e.g. "train" when mixed with real scans), a mapping
    mask name -> split (unlisted masks: train), or None (the datamodule's k-fold split by subject;
    images of one mask then land in several splits). `exclude`: masks not used at all (e.g. those
    of the real scans a mixed run validates and tests on: their shapes must not be trained on)."""
    subjects = []
    for path in label_map_files(label_maps_dir):
        name = path.name[: -len("_seg-vert_msk.nii.gz")]
        if name in set(exclude or ()):
            continue
        per_map = zlib.crc32(name.encode())  # a mask's images do not depend on which others are there
        which = split.get(name, "train") if hasattr(split, "get") else split
        for k in range(int(num_per_map)):
            draw = int(np.random.SeedSequence([seed, per_map, k]).generate_state(1)[0])
            subjects.append(SyntheticSubject(f"synthetic-{name}-{seed:03d}-{k:03d}", str(path), draw, which))
    return subjects
