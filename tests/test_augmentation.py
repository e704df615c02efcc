"""TorchIO training augmentation: maps move with the image, no head-foot flip, `none` is identity."""

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from spine_lightning.core.errors import ConfigError
from spine_lightning.data.augmentation import RandomBoneDensity, augment, build_augmentation
from spine_lightning.data.boundary import boundary_weights
from spine_lightning.data.datamodule import CropDataset

SHAPE = (32, 40, 36)  # [z, y, x]


def _config(root, name: str) -> dict:
    with initialize_config_dir(str(root / "conf"), version_base=None):
        cfg = compose("train.yaml", overrides=[f"augmentation={name}"])
    return OmegaConf.to_container(cfg.data.augmentation, resolve=True)


def _cube_crop():
    """Soft tissue with an off-centre bone cube; target the cube; weights 1 + 2 * target."""
    hu = np.full(SHAPE, 40.0, np.float32)
    target = np.zeros(SHAPE, np.uint8)
    target[6:16, 8:20, 20:30] = 1
    hu[target == 1] = 1000.0
    return hu, target, (1.0 + 2.0 * target).astype(np.float32)


@pytest.mark.filterwarnings("ignore:The maximum displacement is larger")  # small test crop, coarse grid
@pytest.mark.parametrize("name", ["default", "strong"])
def test_image_label_and_weights_move_together(root, name):
    config = _config(root, name)
    spatial = {k: dict(config[k], p=1.0) for k in ("affine", "elastic") if config.get(k)}
    torch.manual_seed(0)
    moved = 0
    # spatial transforms alone: the bright cube and its label coincide; with blur, thick slices
    # (a 10-voxel cube at 4 mm) and intensity changes as well, more loosely
    for transform, least in ((build_augmentation(spatial), 0.9), (build_augmentation(config), 0.75)):
        for _ in range(4):
            hu, target, weights = _cube_crop()
            out, maps = augment(transform, hu, target=target, weights=weights)
            assert out.shape == SHAPE and out.dtype == np.float32
            assert maps["target"].dtype == np.uint8 and set(np.unique(maps["target"])) <= {0, 1}
            # the same nearest-neighbour resampling for both maps; weight 0 where padded
            inside = maps["weights"] > 0
            assert np.array_equal(maps["weights"][inside], 1.0 + 2.0 * maps["target"][inside])
            assert not maps["target"][~inside].any()
            cube = maps["target"] == 1  # bright wherever the label is, whatever the intensity transforms did
            bone = out > (np.median(out[cube]) + np.median(out[~cube])) / 2
            dice = 2 * np.sum(bone & cube) / (bone.sum() + cube.sum())
            assert dice > least, dice
            moved += not np.array_equal(maps["target"], target)
    assert moved >= 4  # every forced spatial draw moved the cube
    hu, target, weights = _cube_crop()
    augment(build_augmentation(spatial), hu, target=target, weights=weights)
    assert all(np.array_equal(a, b) for a, b in zip((hu, target, weights), _cube_crop()))  # inputs untouched


@pytest.mark.parametrize("name", ["default", "strong"])
def test_no_head_foot_flip(root, name):
    """A marker in the head half stays there in every draw (rotation off, everything else forced,
    the dataset's left-right flip included)."""
    config = {k: dict(v, p=1.0) for k, v in _config(root, name).items() if v}
    config["affine"]["degrees"] = 0
    config.pop("elastic", None)  # a smooth warp of a few mm: irrelevant here, and slow
    hu = np.full(SHAPE, 40.0, np.float32)
    target = np.zeros(SHAPE, np.uint8)
    target[22:28, 10:30, 4:12] = 1  # head side (high z), patient's right (low x)
    hu[target == 1] = 800.0
    crops = [dict(hu=hu, target=target, level="L3", subject="s")]
    data = CropDataset(crops, (-1000, 2000), 1.0, flip_lr=True, transform=build_augmentation(config))
    torch.manual_seed(1)
    sides = set()
    for _ in range(16):
        item = data[0]
        z, _, x = np.nonzero(item["target"].numpy())
        assert z.mean() > SHAPE[0] / 2 + 4
        sides.add(bool(x.mean() > SHAPE[2] / 2))
    assert sides == {False, True}  # left-right mirrors do happen


def test_none_is_identity(root):
    assert _config(root, "none") == {} and build_augmentation({}) is None
    hu, target, _ = _cube_crop()
    crops = [dict(hu=hu, target=target, level="L3", subject="s")]
    plain = CropDataset(crops, (-1000, 2000), 1.0)[0]
    datamodule_transform = build_augmentation(_config(root, "none"))
    none = CropDataset(crops, (-1000, 2000), 1.0, transform=datamodule_transform)[0]
    for key in ("image", "target", "weights"):
        assert torch.equal(plain[key], none[key])
    assert torch.equal(plain["weights"], torch.from_numpy(boundary_weights(target, 1.0)))


def test_default_is_the_training_default(root):
    with initialize_config_dir(str(root / "conf"), version_base=None):
        cfg = compose("train.yaml")
    assert cfg.data.augmentation.affine.p == 0.2 and cfg.data.augmentation.elastic is None


def test_bone_density_scales_the_cancellous_band_only():
    hu = np.array([-1000.0, 40.0, 60.0, 200.0, 400.0, 1000.0, 1500.0], np.float32).reshape(1, 1, 7)
    transform = build_augmentation(dict(bone_density=dict(p=1.0, factor=[0.25, 0.25])))
    out, _ = augment(transform, hu)
    assert np.allclose(out.ravel(), [-1000, 40, 60, 60 + 0.25 * 140, 60 + 0.25 * 340, 1000, 1500])
    assert isinstance(transform.transforms[0], RandomBoneDensity)


def test_unknown_entry_is_a_config_error():
    with pytest.raises(ConfigError):
        build_augmentation(dict(rotation=dict(p=1.0)))


def test_study_perturbations_do_what_they_are_named(root):
    """The study's test perturbations (conf/recipe/study_cpu.yaml): +100 HU everywhere, 60 HU noise,
    thick slices that blur along Z only; labels never change."""
    with initialize_config_dir(str(root / "conf"), version_base=None):
        cfg = compose("train.yaml", overrides=["+recipe=study_cpu"])
    perturbations = OmegaConf.to_container(cfg.test_perturbations, resolve=True)
    hu, target, weights = _cube_crop()
    torch.manual_seed(0)
    out = {}
    for name, config in perturbations.items():
        out[name], maps = augment(build_augmentation(config), hu, cfg.data.spacing, target=target, weights=weights)
        assert np.array_equal(maps["target"], target) and np.array_equal(maps["weights"], weights), name
    np.testing.assert_allclose(out["shift"] - hu, 100.0, atol=1e-3)
    assert 55 < np.std(out["noise"] - hu) < 65 and abs(np.mean(out["noise"] - hu)) < 2
    changed = np.abs(out["thick_slices"] - hu) > 1
    assert changed[5:7].any() and changed[15:17].any()  # the cube's faces across Z are blurred ...
    assert not changed[8:14, 8:20, 20:30].any()  # ... slices inside it are not

@pytest.mark.parametrize("axis", ["X", "Y", "Z"])
def test_thick_slices_blur_across_the_named_axis_only(axis):
    """`low_resolution.axes` names the slice direction: a cube's faces across that axis blur, the
    faces along the two others stay sharp (VerSe scans come 1 x 1 x 3 mm sagittal as well as axial)."""
    hu, target, weights = _cube_crop()  # cube [6:16, 8:20, 20:30] in [z, y, x], centre (11, 14, 25)
    config = dict(low_resolution=dict(p=1.0, downsampling=[2.0, 2.0], axes=[axis]))
    out, _ = augment(build_augmentation(config), hu, target=target, weights=weights)
    changed = np.abs(out - hu) > 1
    lines = {"Z": changed[:, 14, 25], "Y": changed[11, :, 25], "X": changed[11, 14, :]}  # through the centre
    for name, line in lines.items():
        assert line.any() == (name == axis), (axis, name)
    with pytest.raises(ConfigError):
        build_augmentation(dict(low_resolution=dict(p=1.0, downsampling=[2.0, 2.0], axes=["W"])))


def test_window_rescale_matches_torchio():
    """The gamma and contrast draws work on the window's [0, 1] scale; the cheap rescale to it
    gives what TorchIO's Clamp + RescaleIntensity give, values outside the window clipped."""
    import torchio as tio

    from spine_lightning.data.augmentation import LinearRescale

    hu = torch.linspace(-2500.0, 3500.0, 4000).reshape(1, 10, 20, 20)
    ours = LinearRescale((-1000.0, 2000.0), (0.0, 1.0))(tio.ScalarImage(tensor=hu.clone())).data
    theirs = tio.Compose([tio.Clamp(-1000.0, 2000.0), tio.RescaleIntensity((0.0, 1.0), in_min_max=(-1000.0, 2000.0))])(
        tio.ScalarImage(tensor=hu.clone())).data
    torch.testing.assert_close(ours, theirs)
    assert ours.min() == 0.0 and ours.max() == 1.0


@pytest.mark.parametrize("weight_values", [2, 3])
def test_binary_maps_packed_into_one_label_map_move_as_each_alone(root, weight_values):
    """`augment` carries the binary maps (target, inside-the-scan mask) and boundary weights of two
    values (1 and the edge weight) as bits of one label map: under the same random draw they come
    out as TorchIO transforms each map on its own, padding 0 included. Weights of more values
    travel as a map of their own, alike."""
    import torchio as tio

    config = _config(root, "strong")
    spatial = build_augmentation({k: dict(config[k], p=1.0) for k in ("affine", "elastic")})
    hu, target, weights = _cube_crop()
    if weight_values == 3:
        weights[:, :, 30:] = 0.5
    valid = np.ones(SHAPE, np.uint8)
    valid[:, :, :5] = 0  # past the scan's edge
    for seed in range(3):
        torch.manual_seed(seed)
        out, maps = augment(spatial, hu, target=target, weights=weights, valid=valid)
        torch.manual_seed(seed)
        alone = spatial(tio.Subject(
            image=tio.ScalarImage(tensor=torch.from_numpy(hu.copy())[None]),
            **{k: tio.LabelMap(tensor=torch.from_numpy(v.copy())[None]) for k, v in
               dict(target=target, weights=weights, valid=valid).items()}))
        np.testing.assert_allclose(out, alone["image"].data[0].numpy(), atol=1e-4)
        for name in ("target", "weights", "valid"):
            assert maps[name].dtype == {"weights": np.float32}.get(name, np.uint8)
            assert np.array_equal(maps[name], alone[name].data[0].numpy()), (seed, name)
        assert not np.array_equal(maps["valid"], valid)  # the draw moved the mask


@pytest.mark.parametrize("axis", ["X", "Y", "Z"])
@pytest.mark.parametrize("packed", [True, False])
def test_a_scan_edge_repeats_its_last_slice_and_leaves_the_scan(axis, packed):
    """`scan_edge` cuts the crop as a tight scan's edge would, `distance_mm` from its centre across the
    named axis: beyond it the last slice inside is repeated (as prediction fills past an edge) and
    the inside-the-scan mask is 0, so the loss skips it; the target is left as it was."""
    hu, target, weights = _cube_crop()
    hu = hu + np.random.default_rng(0).normal(0.0, 10.0, SHAPE).astype(np.float32)  # every slice differs
    valid = np.ones(SHAPE, np.uint8)
    maps = dict(target=target, weights=weights, valid=valid) if packed else dict(weights=weights, valid=valid)
    transform = build_augmentation(dict(scan_edge=dict(p=1.0, distance_mm=[5.0, 5.0], axes=[axis])))
    dim = "ZYX".index(axis)
    sides = set()
    for seed in range(8):
        torch.manual_seed(seed)
        out, result = augment(transform, hu, **maps)
        out_axis, mask_axis = np.moveaxis(out, dim, 0), np.moveaxis(result["valid"], dim, 0)
        inside = np.flatnonzero(mask_axis.reshape(SHAPE[dim], -1).all(axis=1))
        outside = np.flatnonzero(~mask_axis.reshape(SHAPE[dim], -1).any(axis=1))
        assert len(inside) + len(outside) == SHAPE[dim] and len(inside) in (SHAPE[dim] // 2 + 5, SHAPE[dim] // 2 + 6)
        edge = inside.max() if outside.min() > inside.max() else inside.min()
        sides.add(bool(edge == inside.max()))
        assert np.array_equal(out_axis[inside], np.moveaxis(hu, dim, 0)[inside])  # inside: untouched
        assert (out_axis[outside] == out_axis[edge]).all()  # outside: the edge slice repeated
        if packed:
            assert np.array_equal(result["target"], target)
    assert sides == {True, False}  # both sides are drawn
    with pytest.raises(ConfigError):
        build_augmentation(dict(scan_edge=dict(p=1.0, distance_mm=[5.0, 5.0], axes=["W"])))
