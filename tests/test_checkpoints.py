import pytest
import SimpleITK as sitk
import torch

from spine_lightning.core.errors import ConfigError, SpineError
from spine_lightning.inference.checkpoints import (
    BUNDLED_MODELS,
    Ensemble,
    checkpoint_paths,
    inference_checkpoint,
    load_model,
    load_segmentation_module,
)
from spine_lightning.training.module import SpineSegmentationModule

NET = dict(_target_="spine_lightning.models.GCNResidualFCN", width=2, levels=3, convs=1, kernel=3, gcn_kernel=3)


def _save(path, module, hparams=None):
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": hparams or dict(module.hparams)}, path)


def test_round_trip_restores_the_weights(tmp_path):
    module = SpineSegmentationModule(net=NET, levels=["L2", "L3"])
    _save(tmp_path / "m.ckpt", module)
    loaded = load_segmentation_module(tmp_path / "m.ckpt")
    x = torch.randn(1, 1, 8, 8, 8)
    assert torch.equal(loaded(x), module.eval()(x))
    assert not loaded.training


def test_architecture_mismatch_is_refused_naming_the_file(tmp_path):
    module = SpineSegmentationModule(net=NET, levels=["L2"])
    _save(tmp_path / "wide.ckpt", module, dict(module.hparams, net=dict(NET, width=4)))
    with pytest.raises(SpineError, match=r"wide\.ckpt: weights do not match"):
        load_segmentation_module(tmp_path / "wide.ckpt")


def test_foreign_or_broken_files_are_refused(tmp_path):
    torch.save(
        {"state_dict": {}, "hyper_parameters": {"net": {"_target_": "torchvision.models.resnet18"}}},
        tmp_path / "other.ckpt",
    )
    with pytest.raises(SpineError, match="other.ckpt: not a spine_lightning segmentation checkpoint"):
        load_segmentation_module(tmp_path / "other.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(SpineError, match="junk.ckpt: not a readable PyTorch checkpoint"):
        load_segmentation_module(tmp_path / "junk.ckpt")
    with pytest.raises(SpineError, match="missing.ckpt: no such checkpoint file"):
        load_segmentation_module(tmp_path / "missing.ckpt")


def test_inference_checkpoint_keeps_weights_and_drops_training_state(tmp_path):
    module = SpineSegmentationModule(net=NET, levels=["L2", "L3"])
    full = {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "optimizer_states": [{"state": {i: torch.randn(64) for i in range(50)}}],
        "epoch": 3,
    }
    torch.save(full, tmp_path / "last.ckpt")
    inference_checkpoint(tmp_path / "last.ckpt", tmp_path / "model.ckpt")
    slim = torch.load(tmp_path / "model.ckpt", weights_only=True)
    assert "optimizer_states" not in slim and slim["epoch"] == 3
    assert (tmp_path / "model.ckpt").stat().st_size < (tmp_path / "last.ckpt").stat().st_size
    loaded = load_segmentation_module(tmp_path / "model.ckpt")
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, module.state_dict()[key]), key
    x = torch.randn(1, 1, 8, 8, 8)  # loaded channels-last: the same output up to float rounding
    torch.testing.assert_close(loaded(x), module.eval()(x), rtol=1e-4, atol=1e-5)
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(SpineError, match="junk.ckpt"):
        inference_checkpoint(tmp_path / "junk.ckpt", tmp_path / "out.ckpt")
    assert not (tmp_path / "out.ckpt").exists()


def test_bf16_inference_gives_float32_probabilities_close_to_fp32(tmp_path):
    module = SpineSegmentationModule(net=NET, levels=["L2", "L3"])
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, tmp_path / "m.ckpt")
    full = load_segmentation_module(tmp_path / "m.ckpt", precision="fp32")
    half = load_segmentation_module(tmp_path / "m.ckpt", precision="bf16")
    assert half.bf16 and not full.bf16
    x = torch.randn(1, 1, 8, 8, 8)
    with torch.no_grad():
        p_full, p_half = (torch.softmax(m(x), dim=1) for m in (full, half))
    assert p_half.dtype == torch.float32
    assert not torch.equal(p_half, p_full)  # bf16 did run
    assert (p_half - p_full).abs().max() < 0.05
    with pytest.raises(ConfigError, match="precision"):
        load_segmentation_module(tmp_path / "m.ckpt", precision="fp16")


def test_an_ensemble_averages_its_members_probabilities(tmp_path):
    """Two checkpoints as one network: a softmax of its output is the mean of the members' softmax."""
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        _save(tmp_path / f"m{seed}.ckpt", SpineSegmentationModule(net=NET, levels=["L2", "L3"]))
        paths.append(tmp_path / f"m{seed}.ckpt")
    ensemble = load_model(checkpoint_paths([str(p) for p in paths]))
    members = [load_segmentation_module(p) for p in paths]
    x = torch.randn(1, 1, 8, 8, 8)
    with torch.no_grad():
        mean = (torch.softmax(members[0](x), 1) + torch.softmax(members[1](x), 1)) / 2
        torch.testing.assert_close(torch.softmax(ensemble(x), 1), mean, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(mean, torch.softmax(members[0](x), 1), atol=1e-3)  # the members differ
    assert not isinstance(load_model(checkpoint_paths(str(paths[0]))), Ensemble)  # one path: one network
    with pytest.raises(ConfigError, match="ckpt_path"):
        checkpoint_paths([])  # an empty list is a mistake, not a request for the bundled models
    odd = SpineSegmentationModule(net=NET, levels=["L2", "L3"], preprocessing=dict(spacing=2.0))
    _save(tmp_path / "odd.ckpt", odd)
    with pytest.raises(SpineError, match=r"odd\.ckpt: its preprocessing differs"):
        load_model([paths[0], tmp_path / "odd.ckpt"])


def test_without_ckpt_path_the_bundled_models_load_as_one_ensemble_that_segments():
    from spine_lightning.data.crops import label_centroids
    from spine_lightning.data.labels import VERSE_NAMES, level_value
    from spine_lightning.data.phantom import make_phantom
    from spine_lightning.inference.segment import predict_levels

    assert checkpoint_paths(None) == list(BUNDLED_MODELS) and len(BUNDLED_MODELS) == 2
    model = load_model(checkpoint_paths(None))
    assert isinstance(model, Ensemble) and list(model.hparams.levels) == ["L2", "L3", "L4", "L5"]
    image, label = make_phantom(1001)
    centre = {VERSE_NAMES[v]: c for v, c in label_centroids(label).items()}["L3"]
    pred = sitk.GetArrayFromImage(predict_levels(model, image, {"L3": centre}).label) == level_value("L3")
    truth = sitk.GetArrayFromImage(label) == level_value("L3")
    assert (pred & truth).sum() / (pred | truth).sum() > 0.8  # an untrained network scores near 0 here
