"""Timing of training steps: adversarial vs baseline, GCN-residual FCN vs MONAI's VNet, CPU and GPU modes.

`python -m benchmarks.training_steps` times the CPU modes alone and writes benchmarks/results/cpu_steps.md.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import time
from pathlib import Path

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
    """Run the module's real training_step outside a Trainer (no logging, plain backward). The
    optimiser does all its work at learning rate 0: every timed step is the same step."""
    opt = torch.optim.AdamW(module.parameters(), lr=0.0)
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


CPU_MODES = {"fp32": (False, False), "channels_last": (True, False), "bf16": (False, True),
             "bf16_channels_last": (True, True)}


def cpu_modes(zyx, batch: int = 2, repeats: int = 5, net=CPU_NET) -> dict:
    """Seconds per training step of the default CPU network in each memory layout and precision,
    the same weights and batch; rounds interleave the modes so that drift hits all alike."""
    from spine_lightning.models.memory_format import use_channels_last

    torch.manual_seed(0)
    first = SpineSegmentationModule(net=net, levels=["L3"], epsilon=0.0)
    modules, data = {}, _batch(batch, zyx)
    for mode, (channels_last, _) in CPU_MODES.items():
        # bf16 on a random batch can overflow to a non-finite loss on some CPUs: skip that step, say so
        module = _standalone(SpineSegmentationModule(net=net, levels=["L3"], epsilon=0.0, nonfinite="skip"))
        module.load_state_dict(first.state_dict())
        if channels_last:
            use_channels_last(module.net)
        modules[mode] = module

    def step(mode):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=CPU_MODES[mode][1]):
            modules[mode].training_step(data, 0)

    for mode in modules:  # warm-up (oneDNN picks its kernels on the first call)
        step(mode)
    times = {mode: [] for mode in modules}
    for _ in range(repeats):
        for mode in modules:
            times[mode] += _time(lambda mode=mode: step(mode), 1)
    skipped = {mode: m.skipped_batches for mode, m in modules.items() if m.skipped_batches}
    if skipped:
        print(f"cpu_modes: non-finite losses skipped (no backward, times understated): {skipped}", file=sys.stderr)
    out = {f"cpu_{mode}_step_s": statistics.median(t) for mode, t in times.items()}
    fp32 = out["cpu_fp32_step_s"]
    out.update({f"cpu_{mode}_speedup": fp32 / out[f"cpu_{mode}_step_s"] for mode in modules if mode != "fp32"})
    return out


def cpu_name() -> str:
    """The CPU's model name (Linux), else what `platform` knows."""
    info = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in info.read_text().splitlines()
             if line.startswith("model name")] if info.exists() else []
    return names[0] if names else platform.processor() or platform.machine()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="CPU training-step time per memory layout and precision")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "cpu_steps.md")
    args = parser.parse_args(argv)
    zyx = (64, 112, 96)
    r = cpu_modes(zyx, repeats=args.repeats)
    rows = ["| mode | s / step | over fp32 |", "|---|---|---|"]
    rows += [f"| {mode} | {r[f'cpu_{mode}_step_s']:.3f} | {r['cpu_fp32_step_s'] / r[f'cpu_{mode}_step_s']:.2f} |"
             for mode in CPU_MODES]
    table = "\n".join(rows)
    print(table)
    head = (f"# CPU training step: memory layout and precision\n\n{datetime.date.today().isoformat()}, "
            f"{cpu_name()}, {torch.get_num_threads()} threads, "
            f"torch {torch.__version__}. "
            f"The default CPU network (width 4), one training step of batch 2 at {' x '.join(map(str, zyx))} "
            f"voxels (Z, Y, X), median of {args.repeats} interleaved rounds:\n\n"
            "`python -m benchmarks.training_steps`\n\n")
    args.out.write_text(head + table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
