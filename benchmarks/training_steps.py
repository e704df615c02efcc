"""Timing of training steps: adversarial vs baseline, GCN-residual FCN vs MONAI's VNet, GPU modes."""

from __future__ import annotations

import statistics
import time

import torch

from spine_lightning.training.losses import weighted_cross_entropy
from spine_lightning.training.module import SpineSegmentationModule

CPU_NET = dict(_target_="spine_lightning.models.GCNResidualFCN", width=4, levels=5, convs=1, kernel=3, gcn_kernel=7,
               norm="instance")
PAPER_NET = dict(_target_="spine_lightning.models.GCNResidualFCN", width=16, levels=5, convs=[1, 2, 3, 3, 3], kernel=5,
                 gcn_kernel=13, norm="none")


def _batch(batch: int, zyx, device="cpu"):
    g = torch.Generator().manual_seed(0)
    target = (torch.rand(batch, *zyx, generator=g) > 0.9).long()
    return dict(image=torch.randn(batch, 1, *zyx, generator=g).to(device), target=target.to(device),
                weights=torch.ones(batch, *zyx).to(device), level=["L3"] * batch, subject=["bench"] * batch)


def _standalone(module: SpineSegmentationModule) -> SpineSegmentationModule:
    """Run the module's real training_step outside a Trainer (no logging, plain backward)."""
    opt = torch.optim.AdamW(module.parameters(), lr=1e-4)
    module.optimizers = lambda: opt
    module.manual_backward = lambda loss: loss.backward()
    module.log = lambda *a, **k: None
    return module


def _time(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def adversarial_over_baseline(zyx, batch: int = 2, repeats: int = 5, net=CPU_NET) -> dict:
    """One adversarial training step / one baseline step, same model weights and batch; the two are
    interleaved so that drift in the machine's speed hits both alike."""
    torch.manual_seed(0)
    base = _standalone(SpineSegmentationModule(net=net, levels=["L3"], epsilon=0.0))
    adv = _standalone(SpineSegmentationModule(net=net, levels=["L3"], epsilon=0.02))
    adv.load_state_dict(base.state_dict())
    data = _batch(batch, zyx)
    for m in (base, adv):  # warm-up
        m.training_step(data, 0)
    tb, ta = [], []
    for _ in range(repeats):
        tb += _time(lambda: base.training_step(data, 0), 1)
        ta += _time(lambda: adv.training_step(data, 0), 1)
    b, a = statistics.median(tb), statistics.median(ta)
    return dict(adv_over_baseline_step=a / b, baseline_step_s=b, adversarial_step_s=a)


def fcn_over_vnet(zyx, batch: int = 1, repeats: int = 3) -> dict:
    """Training step of the paper-width GCN-residual FCN / MONAI's VNet (same crop and batch)."""
    try:
        from monai.networks.nets import VNet
    except ImportError:
        return dict(fcn_over_vnet_step=None, note="pip install -e '.[bench]' for MONAI")
    import hydra

    torch.manual_seed(0)
    nets = {"fcn": hydra.utils.instantiate(PAPER_NET), "vnet": VNet(spatial_dims=3, in_channels=1, out_channels=2)}
    data = _batch(batch, zyx)
    times = {}
    for name, net in nets.items():
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4)

        def step(net=net, opt=opt):
            opt.zero_grad()
            weighted_cross_entropy(net(data["image"]), data["target"], data["weights"]).backward()
            opt.step()

        step()  # warm-up
        times[name] = statistics.median(_time(step, repeats))
    params = {k: sum(p.numel() for p in n.parameters()) / 1e6 for k, n in nets.items()}
    return dict(fcn_over_vnet_step=times["fcn"] / times["vnet"], fcn_step_s=times["fcn"], vnet_step_s=times["vnet"],
                fcn_params_m=params["fcn"], vnet_params_m=params["vnet"])


def gpu_modes(zyx, batch: int = 2, repeats: int = 10) -> dict:
    """Samples/s and peak memory of the paper network on CUDA: fp32, bf16, bf16+channels-last-3d, +compile."""
    if not torch.cuda.is_available():
        return dict(gpu=None, note="no CUDA device on this machine")
    import hydra

    out = {"gpu_name": torch.cuda.get_device_name()}
    data = _batch(batch, zyx, "cuda")
    for mode in ("fp32", "bf16", "bf16_cl3d", "bf16_cl3d_compile"):
        torch.manual_seed(0)
        net = hydra.utils.instantiate(PAPER_NET).cuda()
        x = data["image"]
        if "cl3d" in mode:
            net = net.to(memory_format=torch.channels_last_3d)
            x = x.contiguous(memory_format=torch.channels_last_3d)
        if "compile" in mode:
            net = torch.compile(net)
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4)

        def step(net=net, opt=opt, x=x, mode=mode):
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=mode != "fp32"):
                loss = weighted_cross_entropy(net(x).float(), data["target"], data["weights"])
            loss.backward()
            opt.step()

        for _ in range(3):
            step()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        for _ in range(repeats):
            step()
        torch.cuda.synchronize()
        out[f"gpu_{mode}_samples_per_s"] = batch * repeats / (time.perf_counter() - t)
        out[f"gpu_{mode}_peak_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return out
