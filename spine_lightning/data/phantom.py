"""Procedural lumbar-spine CT phantoms: the embedded, offline default data set.

Each subject is a CT-like volume in Hounsfield units with a stack of vertebrae T11, T12, L1-L5 and S1
(options: `PhantomSpec.thoracic`, and `transitional` for a sixth lumbar vertebra or a rib-bearing L1);
ribs on the thoracic vertebrae and iliac wings beside the sacrum (bone, label 0: the anchors of
`inference.localization`);
vertebral bodies with a cortical shell and a cancellous core, posterior elements (pedicles, lamina,
spinous, transverse and articular processes), thin intervertebral discs so that neighbours nearly
touch, soft tissue, fat and air. Size, lordotic curvature (each vertebra tilted along it, S1 by the
sacral slope), tilt and position vary per subject; the volume has anisotropic spacing,
partial-volume blur and scanner noise. Labels use VerSe numbering.
Everything is deterministic from the seed.

Coordinates are physical millimetres in SimpleITK's LPS frame: x to the patient's left, y to the
back, z to the head.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from spine_lightning.data.labels import VERSE_LABELS

STACK = ("T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1")  # top to bottom (the default spec's)
_SIZE_INDEX = {"T10": -2, "T11": -1, "T12": 0, "L1": 1, "L2": 2, "L3": 3, "L4": 4, "L5": 5, "L6": 5.5, "S1": 6}
AIR_HU, FAT_HU, SOFT_HU, DISC_HU = -1000.0, -100.0, 40.0, 80.0
# Part of the cache key: change it when the images change (2: each vertebra tilts with the curve,
# not against it; S1 by the sacral slope on top; the curve straight above L1; sacral alae beside
# the body, not behind it; the ilia stand upright).
PHANTOM_VERSION = 2
LORDOSIS_TOP_MM = 60.0  # above the apex (L3): about where L1 sits


@dataclass(frozen=True)
class PhantomSpec:
    spacing: tuple[float, float, float] = (0.8, 0.8, 2.5)
    fov_mm: tuple[float, float] = (170.0, 180.0)  # x (left-right), y (front-back)
    supersample_z: int = 3  # partial-volume: render finer slices, then average
    noise_hu: float = 25.0
    disc_mm: tuple[float, float] = (1.8, 3.5)  # intervertebral disc height range, before the size scale
    thoracic: tuple[str, ...] = ("T11", "T12")  # thoracic levels above L1 (T10, T11, T12)
    ribs: bool = True  # a pair of ribs on every thoracic vertebra (label 0, separated by a joint gap)
    pelvis: bool = True  # iliac wings either side of the sacrum (label 0, separated by the SI joint)
    transitional: str | None = None  # "L6": six lumbar vertebrae; "rib_L1": L1 carries ribs

    def stack(self) -> tuple[str, ...]:
        """Levels top to bottom."""
        lumbar = ("L1", "L2", "L3", "L4", "L5") + (("L6",) if self.transitional == "L6" else ())
        if self.transitional not in (None, "L6", "rib_L1"):
            raise ValueError(f"transitional={self.transitional!r}: None, 'L6' or 'rib_L1'")
        return tuple(self.thoracic) + lumbar + ("S1",)

    def rib_levels(self) -> tuple[str, ...]:
        if not self.ribs:
            return ()
        return tuple(self.thoracic) + (("L1",) if self.transitional == "rib_L1" else ())


def _rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    """Rotation matrix (radians) about x (sagittal tilt), y (coronal tilt), z (axial rotation)."""
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    rot_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    rot_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rot_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rot_z @ rot_y @ rot_x


def _vertebra_layout(rng: np.random.Generator, disc_mm=(1.8, 3.5), stack=STACK, rib_levels=()) -> list[dict]:
    """Centre, orientation and dimensions of every vertebra of the stack, bottom (S1) up."""
    scale = rng.uniform(0.88, 1.12)
    lordosis = rng.uniform(0.0008, 0.0022)  # mm^-1: curvature of the sagittal centre line
    y0, x0 = rng.uniform(15.0, 30.0), rng.uniform(-6.0, 6.0)
    coronal = rng.uniform(-0.0006, 0.0006)  # mild scoliosis
    z = rng.uniform(-95.0, -85.0)
    layout, z_mid = [], 0.0
    for name in reversed(stack):
        sacrum = name == "S1"
        level = _SIZE_INDEX[name]  # sizes grow downwards
        height = scale * (rng.uniform(27.0, 31.0) if sacrum else rng.uniform(23.5, 28.0))
        disc = scale * rng.uniform(*disc_mm)
        half_w = scale * (24.0 + 0.6 * level + rng.uniform(-1.5, 1.5))
        half_d = scale * (15.0 + 0.4 * level + rng.uniform(-1.0, 1.0))
        if layout:
            prev = layout[-1]
            z = prev["centre"][2] + prev["height"] / 2 + prev["disc"] + height / 2
        # the lordotic curve (apex at L3) ends at L1: above it the column goes on straight
        zc = min(z - z_mid, LORDOSIS_TOP_MM)
        y = y0 + lordosis * zc * (2 * (z - z_mid) - zc)
        slope_y = 2 * lordosis * zc
        x = x0 + coronal * zc * (2 * (z - z_mid) - zc)
        slope_x = 2 * coronal * zc
        # Each vertebra's axis follows the curve (its tangent); S1 leans forward further, by the
        # sacral slope (its upper endplate faces forward and up, 30-50 degrees off the axial plane).
        tilt_x = rng.normal(0, 0.04)
        rx = -np.arctan(slope_y) + tilt_x + (0.45 if sacrum else 0.0)
        ry = np.arctan(slope_x) + rng.normal(0, 0.03)
        rz = rng.normal(0, 0.04)
        layout.append(
            dict(
                name=name,
                centre=np.array([x, y, z]),
                rot=_rotation(rx, ry, rz),
                pelvis_rot=_rotation(tilt_x, ry, rz),  # the pelvis stands upright, whatever the sacral slope
                height=height,
                disc=disc,
                half_w=half_w,
                half_d=half_d,
                scale=scale,
                sacrum=sacrum,
                ribs=name in rib_levels,
            )
        )
    return layout


def _vertebra_parts(u, v, w, vert: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masks (body, body cortex, posterior elements) of one vertebra in its local frame (mm).

    u: left-right, v: front-back (posterior positive), w: up, origin at the body centre.
    """
    s, h, a, b = vert["scale"], vert["height"], vert["half_w"], vert["half_d"]
    # Vertebral body: elliptic cylinder with a slight waist, flat endplates, flattened back.
    waist = 1.0 - 0.07 * (1.0 - (2.0 * w / h) ** 2)
    r = np.sqrt((u / (a * waist)) ** 2 + (v / b) ** 2)
    body = (r <= 1.0) & (np.abs(w) <= h / 2) & (v <= 0.72 * b)
    shell = 1.6 * s
    depth = np.minimum.reduce([(1.0 - r) * min(a, b), h / 2 - np.abs(w), 0.72 * b - v])
    cortex = body & (depth < shell)

    canal_u, canal_v = 10.5 * s, 8.0 * s
    vc = 0.72 * b + canal_v - 1.0
    ring = np.sqrt((u / canal_u) ** 2 + ((v - vc) / canal_v) ** 2)
    ring_outer = np.sqrt((u / (canal_u + 5.5 * s)) ** 2 + ((v - vc) / (canal_v + 5.0 * s)) ** 2)
    arch_w = np.abs(w - 0.1 * h) <= 0.36 * h
    pedicles = (
        arch_w
        & (np.abs(v - (0.72 * b + 0.5 * canal_v)) <= 0.6 * canal_v + 2)
        & (np.abs(np.abs(u) - (canal_u + 2.5 * s)) <= 3.8 * s)
    )
    lamina = arch_w & (ring > 1.0) & (ring_outer <= 1.0) & (v >= vc)
    back = vc + canal_v + 3.0 * s
    spin_len = (16.0 if vert["sacrum"] else 27.0) * s
    w_spin = -0.35 * (v - back)  # the spinous process slopes downwards
    spinous = (
        (np.abs(u) <= 2.8 * s) & (v >= back - 2) & (v <= back + spin_len) & (np.abs(w - w_spin + 0.05 * h) <= 0.3 * h)
    )
    tp_len = (32.0 if vert["sacrum"] else 21.0) * s
    tp_u0 = canal_u + 3.0 * s
    # transverse processes behind the body; the sacral alae are wings from the body's sides back
    # to the sacral canal, level with the body
    v0, v1 = (-0.4 * b, vc + 3.0) if vert["sacrum"] else (vc - 5.0, vc + 3.0)
    half_h = 0.45 * h if vert["sacrum"] else 4.5 * s
    transverse = (
        (np.abs(u) >= tp_u0)
        & (np.abs(u) <= tp_u0 + tp_len)
        & (((v - (v0 + v1) / 2) / ((v1 - v0) / 2)) ** 2 + ((w - 0.05 * h) / half_h) ** 2 <= 1)
    )
    # Articular processes: the superior ones (lateral) reach up to the inferior ones (medial) of
    # the vertebra above, leaving a joint gap of about 1.5 mm.
    ua = canal_u + 4.0 * s
    facet_v = (v >= vc - 1.0) & (v <= vc + 7.0 * s)
    gap = h / 2 + vert["disc"]
    superior = facet_v & (np.abs(u) >= ua + 0.8) & (np.abs(u) <= ua + 6.0 * s) & (w >= 0) & (w <= gap + 5.0)
    inferior = facet_v & (np.abs(u) >= ua - 5.0 * s) & (np.abs(u) <= ua - 0.8) & (w <= 0) & (w >= -gap - 5.0)
    posterior = (pedicles | lamina | spinous | transverse | superior | inferior) & ~body
    return body, cortex, posterior


def _ribs(u, v, w, vert: dict) -> np.ndarray:
    """A pair of ribs beside a vertebra (label 0): from just beyond the transverse processes' tips,
    sloping down and curving forward (short, like floating ribs T11-T12)."""
    s, h, b = vert["scale"], vert["height"], vert["half_d"]
    canal_u, canal_v = 10.5 * s, 8.0 * s
    vc = 0.72 * b + canal_v - 1.0
    u0 = canal_u + 3.0 * s + 21.0 * s + 4.0  # beyond the transverse process's tip, a joint gap
    big_a, big_b = 78.0 * s, 55.0 * s
    v_mid = vc + 6.0 * s - big_b * np.sqrt(1 - (u0 / big_a) ** 2)  # the ellipse passes by the tip
    e = np.sqrt((u / big_a) ** 2 + ((v - v_mid) / big_b) ** 2)
    w_rib = 0.05 * h - 0.12 * np.maximum(np.abs(u) - u0, 0)  # sloping down outwards
    return (np.abs(e - 1.0) * big_b <= 3.5 * s) & (np.abs(w - w_rib) <= 4.5 * s) & (np.abs(u) >= u0) & (
        v >= v_mid - 0.35 * big_b
    )


def _ilia(u, v, w, vert: dict) -> np.ndarray:
    """Iliac wings beside the sacrum (label 0), in the pelvis's own upright frame: a plate running
    forward-outward from the SI joint gap beyond the alae."""
    s, h, b = vert["scale"], vert["height"], vert["half_d"]
    canal_u, canal_v = 10.5 * s, 8.0 * s
    vc = 0.72 * b + canal_v - 1.0
    u0 = canal_u + 3.0 * s + 32.0 * s + 3.0  # beyond the alae, the SI joint gap
    v_plate = vc - 0.6 * (np.abs(u) - u0)
    return (
        (np.abs(u) >= u0)
        & (np.abs(u) <= u0 + 60.0 * s)
        & (np.abs(v - v_plate) <= 6.0 * s)
        & (w >= -2.5 * h)  # on down past the scan's lower end, towards the hip joints
        & (w <= h / 2 + 18.0 * s)
    )


def _smooth_noise(rng: np.random.Generator, shape, sigma: float, coarse: int) -> np.ndarray:
    """Unit-variance smooth noise; drawn on a grid `coarse` times coarser, then interpolated (fast)."""
    small = tuple(-(-n // coarse) + 1 for n in shape)
    field = ndimage.gaussian_filter(rng.standard_normal(small).astype(np.float32), sigma / coarse)
    field = ndimage.zoom(field, coarse, order=1)[tuple(slice(0, n) for n in shape)]
    return field / (field.std() + 1e-6)


def make_phantom(seed: int, spec: PhantomSpec = PhantomSpec()) -> tuple[sitk.Image, sitk.Image]:
    """CT (int16 HU) and label map (uint8, VerSe numbering) of one procedural subject."""
    rng = np.random.default_rng(seed)
    layout = _vertebra_layout(rng, spec.disc_mm, spec.stack(), spec.rib_levels())
    sx, sy, sz = spec.spacing
    fine_z = sz / spec.supersample_z
    z_lo = layout[0]["centre"][2] - layout[0]["height"] / 2 - 25.0  # the pelvis below S1 (an anchor needs it)
    z_hi = layout[-1]["centre"][2] + layout[-1]["height"] / 2 + 10.0
    nx, ny = int(spec.fov_mm[0] / sx), int(spec.fov_mm[1] / sy)
    nz = int(np.ceil((z_hi - z_lo) / sz))
    origin = np.array([-spec.fov_mm[0] / 2 + rng.uniform(-8, 8), -spec.fov_mm[1] / 2 + 25 + rng.uniform(-8, 8), z_lo])
    xs = origin[0] + sx * np.arange(nx)
    ys = origin[1] + sy * np.arange(ny)
    zs = origin[2] - sz / 2 + fine_z * (np.arange(nz * spec.supersample_z) + 0.5)

    # Soft tissue: torso ellipse with a subcutaneous fat layer and darker/brighter organs.
    gz, gy, gx = np.meshgrid(zs, ys, xs, indexing="ij", sparse=True)
    ax, ay = rng.uniform(135, 165), rng.uniform(100, 120)
    torso_r = np.sqrt((gx / ax) ** 2 + ((gy + 10.0) / ay) ** 2) + 0 * gz
    fat = rng.uniform(12.0, 25.0)
    hu = np.where(torso_r <= 1.0, SOFT_HU, AIR_HU).astype(np.float32)
    hu[(torso_r <= 1.0) & (torso_r > 1.0 - fat / ay)] = FAT_HU
    hu += np.where(torso_r <= 1.0 - fat / ay, 12.0 * _smooth_noise(rng, hu.shape, 6.0, coarse=4), 0.0)
    labels = np.zeros(hu.shape, dtype=np.uint8)

    # Wide enough for real scans: osteoporotic cores measure 70-105 HU, a mask's cortical rim
    # 300 HU after partial volume; posterior elements sit between core and cortex.
    cortical_hu = rng.uniform(300.0, 1000.0)
    cancellous_hu = rng.uniform(50.0, 300.0)
    posterior_hu = cancellous_hu + rng.uniform(0.3, 0.6) * (max(cortical_hu, cancellous_hu + 100.0) - cancellous_hu)
    texture = _smooth_noise(rng, hu.shape, 1.5, coarse=2)

    def local_frame(vert, lo_local, hi_local):
        """Index ranges of the box that holds the local box [lo_local, hi_local] (mm) once rotated
        into place, and the local coordinates of its voxels."""
        c, rot = vert["centre"], vert["rot"]
        corners = np.array(np.meshgrid(*zip(lo_local, hi_local), indexing="ij")).reshape(3, -1)
        world = rot @ corners
        lo, hi = c + world.min(axis=1), c + world.max(axis=1)
        ix = slice(*np.clip(np.searchsorted(xs, [lo[0], hi[0]]), 0, nx))
        iy = slice(*np.clip(np.searchsorted(ys, [lo[1], hi[1]]), 0, ny))
        iz = slice(*np.clip(np.searchsorted(zs, [lo[2], hi[2]]), 0, zs.size))
        pz, py, px = np.meshgrid(
            *(np.float32(g - o) for g, o in ((zs[iz], c[2]), (ys[iy], c[1]), (xs[ix], c[0]))), indexing="ij"
        )  # local = rot^T (p - c)
        u = rot[0, 0] * px + rot[1, 0] * py + rot[2, 0] * pz
        v = rot[0, 1] * px + rot[1, 1] * py + rot[2, 1] * pz
        w = rot[0, 2] * px + rot[1, 2] * py + rot[2, 2] * pz
        return (iz, iy, ix), u, v, w

    # Discs first so that bone, drawn afterwards, wins where they overlap.
    for lower, upper in zip(layout[:-1], layout[1:]):
        disc = dict(centre=(lower["centre"] + upper["centre"]) / 2, rot=(lower["rot"] + upper["rot"]) / 2)
        half = upper["height"] / 2 + lower["disc"]
        box, u, v, w = local_frame(
            disc, (-lower["half_w"], -lower["half_d"], -half), (lower["half_w"], lower["half_d"], half)
        )
        inside = (np.sqrt((u / (0.97 * lower["half_w"])) ** 2 + (v / (0.97 * lower["half_d"])) ** 2) <= 1) & (
            np.abs(w) <= upper["height"] / 2 + lower["disc"]
        )
        hu[box][inside] = DISC_HU + 10.0 * texture[box][inside]

    for vert in layout:
        s, h = vert["scale"], vert["height"]
        reach = (60.0 if vert["sacrum"] else 40.0) * s  # transverse processes / sacral alae
        lo, hi = [-reach, -vert["half_d"] - 1, -h / 2 - 9], [reach, 70.0 * s, h / 2 + 9]
        pelvis = vert["sacrum"] and spec.pelvis
        if vert["ribs"]:
            lo, hi = [-120.0 * s, -55.0 * s, -h / 2 - 30.0 * s], [120.0 * s, 70.0 * s, h / 2 + 24.0 * s]
        box, u, v, w = local_frame(vert, lo, hi)
        body, cortex, posterior = _vertebra_parts(u, v, w, vert)
        region, lab, tex = hu[box], labels[box], texture[box]
        free = lab == 0  # a voxel already claimed by a neighbour keeps its label
        if vert["ribs"]:
            beside = _ribs(u, v, w, vert) & free & ~body & ~posterior
            region[beside] = posterior_hu + 80.0 * tex[beside]
        region[body & free] = cancellous_hu + 40.0 * tex[body & free]
        region[cortex & free] = cortical_hu + 60.0 * tex[cortex & free]
        region[posterior & free] = posterior_hu + 80.0 * tex[posterior & free]
        lab[(body | posterior) & free] = VERSE_LABELS[vert["name"]]
        hu[box], labels[box] = region, lab
        if pelvis:  # after the sacrum, where it leaves room: the ilia are bone beside it, label 0
            lo, hi = [-120.0 * s, -55.0 * s, -2.5 * h], [120.0 * s, 70.0 * s, h / 2 + 24.0 * s]
            box, u, v, w = local_frame(dict(vert, rot=vert["pelvis_rot"]), lo, hi)
            wings = _ilia(u, v, w, vert) & (labels[box] == 0)
            region = hu[box]
            region[wings] = posterior_hu + 80.0 * texture[box][wings]
            hu[box] = region

    # Partial volume: blur with the in-plane point spread, then average fine slices into thick ones.
    hu = ndimage.gaussian_filter(hu, sigma=(0.6 * spec.supersample_z / 2, 0.7, 0.7))
    k = spec.supersample_z
    hu = hu.reshape(nz, k, ny, nx).mean(axis=1)
    labels = labels[k // 2 :: k]
    hu += spec.noise_hu * rng.standard_normal(hu.shape).astype(np.float32)

    image = sitk.GetImageFromArray(np.clip(np.round(hu), -1024, 3071).astype(np.int16))
    label = sitk.GetImageFromArray(labels)
    for img in (image, label):
        img.SetSpacing((sx, sy, sz))
        img.SetOrigin(tuple(float(o) for o in origin))
    return image, label
