"""Degradation throughput: ours (per-sample seeded) vs basicsr's reference path (Real-ESRGAN feed_data).

    python benchmarks/degradation.py                      # CPU, batch 8, 512x512 HR crops
    python benchmarks/degradation.py --device cuda        # GPU, batch 16

Reference = what Real-ESRGAN training does: per-sample numpy kernels drawn by the dataset (basicsr
random_mixed_kernels / circular_lowpass_kernel, global RNG), then RealESRGANModel.feed_data's batched basicsr
filter2D / random_add_*_noise_pt / DiffJPEG / USMSharp, with ONE resize scale and noise type per batch.
Two settings, each ours vs reference: USM on (Real-ESRGAN x4plus) and USM off (OSEDiff/TVT, our default).
All four paths run interleaved in one process (order rotated per iteration) so load drift hits them alike.
Writes benchmarks/results/degradation.md.
"""
import os
import platform
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from _machine import machine

from tvt._compat import import_basicsr
from tvt.data.degradation import (
    RealESRGANDegradation,
    load_degradation_config,
    random_blur_kernel,
    random_final_sinc_kernel,
)
from tvt_scripts._cli import command

import_basicsr()
from basicsr.data.degradations import random_add_gaussian_noise_pt, random_add_poisson_noise_pt  # noqa: E402
from basicsr.utils.diffjpeg import DiffJPEG  # noqa: E402
from basicsr.utils.img_process_util import USMSharp, filter2D  # noqa: E402


class ReferenceFeedData:
    """basicsr's path: RealESRGANDataset kernel draws + RealESRGANModel.feed_data (global RNGs, batched)."""

    def __init__(self, cfg, device):
        self.opt, self.usm = cfg, USMSharp().to(device)
        self.jpeger = DiffJPEG(differentiable=False).to(device)

    def _resize_noise(self, out, s, size):
        opt = self.opt
        kind = random.choices(["up", "down", "keep"], getattr(opt, f"resize_prob{s}"))[0]
        lo, hi = getattr(opt, f"resize_range{s}")
        scale = np.random.uniform(1, hi) if kind == "up" else np.random.uniform(lo, 1) if kind == "down" else 1
        mode = random.choice(["area", "bilinear", "bicubic"])
        if size is None:
            out = F.interpolate(out, scale_factor=scale, mode=mode)
        else:
            out = F.interpolate(out, size=(int(size[0] * scale), int(size[1] * scale)), mode=mode)
        gray_prob = getattr(opt, f"gray_noise_prob{s}")
        if np.random.uniform() < getattr(opt, f"gaussian_noise_prob{s}"):
            return random_add_gaussian_noise_pt(out, getattr(opt, f"noise_range{s}"), gray_prob=gray_prob,
                                                clip=True, rounds=False)
        return random_add_poisson_noise_pt(out, getattr(opt, f"poisson_scale_range{s}"), gray_prob=gray_prob,
                                           clip=True, rounds=False)

    def _jpeg(self, out, jpeg_range):
        q = out.new_zeros(out.size(0)).uniform_(*jpeg_range)
        return self.jpeger(torch.clamp(out, 0, 1), quality=q).contiguous()  # filter2D .view()s it

    def __call__(self, hr: torch.Tensor) -> torch.Tensor:
        opt, (h, w), dev = self.opt, hr.shape[-2:], hr.device
        ks = [(random_blur_kernel(opt, 1), random_blur_kernel(opt, 2), random_final_sinc_kernel(opt)) for _ in hr]
        k1, k2, sinc = (torch.as_tensor(np.stack(k), dtype=torch.float32, device=dev) for k in zip(*ks))
        gt = self.usm(hr) if opt.use_usm else hr
        out = filter2D(gt, k1)
        out = self._jpeg(self._resize_noise(out, "", None), opt.jpeg_range)
        if np.random.uniform() < opt.second_blur_prob:
            out = filter2D(out, k2)
        out = self._resize_noise(out, "2", (h / opt.scale, w / opt.scale))
        lr_size = (h // opt.scale, w // opt.scale)
        if np.random.uniform() < 0.5:
            out = filter2D(F.interpolate(out, size=lr_size, mode=random.choice(["area", "bilinear", "bicubic"])), sinc)
            out = self._jpeg(out, opt.jpeg_range2)
        else:
            out = self._jpeg(out, opt.jpeg_range2)
            out = filter2D(F.interpolate(out, size=lr_size, mode=random.choice(["area", "bilinear", "bicubic"])), sinc)
        return torch.clamp((out * 255.0).round(), 0, 255) / 255.0


def machine_info(device: torch.device) -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"- {machine(str(device))}; 1-min load average {load:.1f} at the end (shared machine: other jobs add "
            f"noise); torch threads: {torch.get_num_threads()}\n"
            f"- torch {torch.__version__}, Python {platform.python_version()}, {platform.platform()}")


@dataclass
class DegradationBenchConfig:
    device: str = "cpu"
    batch: Optional[int] = None  # default: 8 on CPU, 16 on CUDA
    size: int = 512
    iters: int = 6  # timed iterations per path (after one warm-up)
    threads: int = 2
    degradation: str = "realesrgan"  # the degradation config (tvt.data.presets)
    out: str = str(Path(__file__).parent / "results" / "degradation.md")


@command(DegradationBenchConfig)
def main(args: DegradationBenchConfig) -> int:
    dev = torch.device(args.device)
    batch = args.batch or (16 if dev.type == "cuda" else 8)
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    g = torch.Generator().manual_seed(0)
    hr = F.interpolate(torch.rand(batch, 3, args.size // 8, args.size // 8, generator=g),
                       size=(args.size, args.size), mode="bicubic").clamp(0, 1).to(dev)
    paths = {}
    for usm in (True, False):
        cfg = load_degradation_config(args.degradation, [f"use_usm={str(usm).lower()}"])
        ours, ref = RealESRGANDegradation(cfg).to(dev), ReferenceFeedData(cfg, dev)
        tag = "USM on" if usm else "USM off"
        paths[f"ours, {tag}"] = lambda it, ours=ours: ours(hr, range(it * batch, (it + 1) * batch), 0)
        paths[f"basicsr, {tag}"] = lambda it, ref=ref: ref(hr)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    for f in paths.values():  # warm-up
        f(10_000)
    times = {k: [] for k in paths}
    names = list(paths)
    for it in range(args.iters):  # interleaved, order rotated
        for name in names[it % len(names) :] + names[: it % len(names)]:
            sync()
            t = time.perf_counter()
            paths[name](it)
            sync()
            times[name].append(time.perf_counter() - t)
    ips = {k: batch * len(v) / sum(v) for k, v in times.items()}  # throughput over all timed iterations
    rows = "\n".join(f"| {k} | {ips[k]:.2f} | {batch / max(v):.2f} | {batch / min(v):.2f} |" for k, v in times.items())
    r_on, r_off = ips["ours, USM on"] / ips["basicsr, USM on"], ips["ours, USM off"] / ips["basicsr, USM off"]
    text = f"""# Degradation throughput (`benchmarks/degradation.py`)

Real-ESRGAN second-order degradation, {args.size}x{args.size} HR -> {args.size // 4}x{args.size // 4} LR,
config `{args.degradation}`, batch {batch}, device `{args.device}`, {args.iters} timed iterations per path after one
warm-up, all paths interleaved in one process; kernel drawing included.
Command: `python benchmarks/degradation.py --device {args.device} --batch {batch} --iters {args.iters}`.

| path | images/s (all iterations) | slowest iteration | fastest iteration |
|---|---|---|---|
{rows}

**ours / basicsr: {r_on:.2f}x with USM (Real-ESRGAN setting), {r_off:.2f}x without USM (OSEDiff/TVT setting).**

- **ours**: `tvt.data.degradation.RealESRGANDegradation`; every draw seeded per (seed, index), so each sample has its
  own resize scales and the stages between the first blur and the final resize run per sample; USM (two grouped 1-D
  passes), blur 1, the final sinc and the rounding run batched.
- **basicsr**: RealESRGANDataset kernel draws + RealESRGANModel.feed_data ops (global RNGs, one resize scale and one
  noise type per batch, fully batched, USM as basicsr's 51x51 2-D convolution). Not reproducible per sample.
- Each iteration draws new scales (per batch for basicsr, per sample for ours), so iteration times vary; the
  throughput column pools all iterations. Same distributions, so the expected work per image is the same.

Machine (measured in the same run):
{machine_info(dev)}
"""
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
