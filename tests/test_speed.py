"""Speed switches: wired into the config, applied to the network; compile ignored on CPU runs."""

import logging

import torch
from conftest import ROOT
from hydra import compose, initialize_config_dir

from spine_lightning.models import GCNResidualFCN
from spine_lightning.models.memory_format import use_channels_last
from spine_lightning.training.speed import apply_speed_options


def small_net():
    torch.manual_seed(0)
    return GCNResidualFCN(in_channels=1, num_classes=2, width=2, levels=2, convs=1, kernel=3, gcn_kernel=3)


def test_config_has_channels_last_on_and_the_gpu_switches_off_by_default():
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train")
        on = compose("train", overrides=["channels_last=false", "compile=true",
                                         "trainer.precision=bf16-mixed"])
    assert cfg.channels_last is True and cfg.compile is False and cfg.trainer.precision == "32-true"
    assert on.channels_last is False and on.compile is True and on.trainer.precision == "bf16-mixed"


def test_channels_last_changes_layout_not_result():
    net, x = small_net().eval(), torch.randn(1, 1, 8, 8, 8)
    with torch.no_grad():
        before = net(x)
        use_channels_last(net)
        after = net(x)
    weight = next(m.weight for m in net.modules() if isinstance(m, torch.nn.Conv3d)
                  and m.kernel_size == (3, 3, 3) and m.in_channels > 1)
    assert weight.is_contiguous(memory_format=torch.channels_last_3d) and not weight.is_contiguous()
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-6)
    assert set(net.state_dict()) == set(small_net().state_dict())  # checkpoints stay interchangeable


def test_on_cpu_channels_last_applies_and_compile_is_ignored_with_a_warning(caplog):
    net = small_net()
    with caplog.at_level(logging.WARNING, logger="spine_lightning.training.speed"):
        applied = apply_speed_options(net, channels_last=True, compile=True, accelerator="cpu")
    assert applied == ["channels_last"]
    assert "compile=true ignored" in caplog.text and "channels_last" not in caplog.text
    weights = [p for p in net.parameters() if p.dim() == 5 and p.shape[1] > 1 and p.shape[2] > 1]
    assert weights
    assert all(p.is_contiguous(memory_format=torch.channels_last_3d) and not p.is_contiguous() for p in weights)
    assert net._compiled_call_impl is None


def test_nothing_to_do_when_off():
    net = small_net()
    assert apply_speed_options(net, channels_last=False, compile=False, accelerator="gpu") == []
    assert all(p.is_contiguous() for p in net.parameters())
