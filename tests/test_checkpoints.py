import pytest
import torch

from spine_lightning.core.errors import ConfigError, SpineError
from spine_lightning.inference.checkpoints import inference_checkpoint, load_segmentation_module
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
