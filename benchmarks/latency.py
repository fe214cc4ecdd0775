"""Per-image latency and peak memory: TVT (VAE-D4 + CE-UNet) vs the OSEDiff architecture (VAE-D8 + SD UNet).

Full-size SD 2.1-base-shaped models with random weights (no download; latency does not depend on the
weights), same precision and attention backend (diffusers' default SDPA processor) for both, measured in
one run. Each architecture runs in its own subprocess so its peak memory is its own.

What is timed: OneStepGenerator.forward = VAE encode + one UNet call + VAE decode, for one image, the prompt
embedding precomputed (a fixed prompt is encoded once per run). Median of --repeats after --warmup.
Memory: CPU = peak resident set size of the worker process (resource.getrusage ru_maxrss, includes the
weights; tracemalloc does not see torch's allocator); GPU = torch.cuda.max_memory_allocated per size.

    python benchmarks/latency.py                                   # CPU, 128 and 256 px output, fp32
    python benchmarks/latency.py --device cuda --dtype bf16 --sizes 512 1024 2048 [--tiled] [--compile] [--channels-last]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from tvt.models.sd21 import SD21_SCHEDULER_CONFIG, SD21_UNET_CONFIG, SD21_VAE_CONFIG
from tvt.pipeline import DTYPES, OVERLAP_OUTPUT_PX, TILE_OUTPUT_PX

ROOT = Path(__file__).resolve().parents[1]


def ce_unet_config() -> dict:
    """The CE-UNet (Sec. 3.3) derived from the SD 2.1-base config by tvt.models.ce_unet."""
    from tvt.models.ce_unet import ce_unet_config as from_sd

    return from_sd(SD21_UNET_CONFIG)


def self_attention_macs(cfg: dict, latent_h: int, latent_w: int) -> int:
    """MACs of the self-attention matmuls (QK^T and AV: 2 N^2 C per transformer block) of a diffusers UNet.

    The paper's FLOPs leave these out (tvt.flops); they grow with the square of the token count,
    so a level at full latent resolution (the CE-UNet's new first level) costs a lot at 512 px and above.
    Cross-attention over 77 text tokens is negligible and not counted.
    """
    chans, lpb, levels = cfg["block_out_channels"], cfg["layers_per_block"], len(cfg["block_out_channels"])
    tokens = [(latent_h >> i) * (latent_w >> i) for i in range(levels)]
    macs = sum(lpb * 2 * tokens[i] ** 2 * chans[i] for i, t in enumerate(cfg["down_block_types"]) if "CrossAttn" in t)
    macs += sum((lpb + 1) * 2 * tokens[levels - 1 - j] ** 2 * chans[levels - 1 - j]
                for j, t in enumerate(cfg["up_block_types"]) if "CrossAttn" in t)
    return macs + 2 * tokens[-1] ** 2 * chans[-1]  # mid block


def build(arch: str):
    """Random full-size (vae, unet) for ``arch``; the default diffusers initialisation."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from tvt.models.vae import build_vae_d4

    torch.manual_seed(0)
    if arch == "tvt":
        return build_vae_d4("d4"), UNet2DConditionModel(**ce_unet_config()), "tvt.models.ce_unet.ce_unet_config"
    return AutoencoderKL(**SD21_VAE_CONFIG), UNet2DConditionModel(**SD21_UNET_CONFIG), "SD 2.1-base config"


def worker(args) -> dict:
    """Runs in a subprocess: one architecture, all sizes; prints one JSON line."""
    from diffusers import DDPMScheduler

    from tvt.models.generator import OneStepGenerator
    from tvt.models.vae import enable_vae_tiling

    torch.set_num_threads(args.threads) if args.threads else None
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    t0 = time.perf_counter()
    vae, unet, source = build(args.arch)
    gen = OneStepGenerator(vae, unet, DDPMScheduler(**SD21_SCHEDULER_CONFIG).alphas_cumprod).eval().requires_grad_(False)
    gen.to(device)
    if dtype != torch.float32:  # built in fp32
        unet.to(dtype=dtype)
        vae.to(dtype=torch.float32 if dtype == torch.float16 else dtype)  # as the pipeline: fp16 VAE upcast
    if args.channels_last:
        unet.to(memory_format=torch.channels_last)
        vae.to(memory_format=torch.channels_last)
    if args.compile:
        unet.forward = torch.compile(unet.forward, mode="max-autotune-no-cudagraphs")
    build_s = time.perf_counter() - t0
    params = dict(vae=sum(p.numel() for p in vae.parameters()), unet=sum(p.numel() for p in unet.parameters()))
    emb = torch.randn(1, 77, 1024, device=device, dtype=dtype)
    rss_weights = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux reports KiB)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    # --tiled: the pipeline's default tiles (768 / 256 output px, latent and VAE); otherwise whole images
    if args.tiled:
        gen.enable_tiling(TILE_OUTPUT_PX // gen.scale_factor, OVERLAP_OUTPUT_PX // gen.scale_factor)
        enable_vae_tiling(vae, TILE_OUTPUT_PX)
    results = []
    for size in args.sizes:
        x = torch.rand(1, 3, size, size, device=device) * 2 - 1
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        times, parts = [], []
        with torch.inference_mode():
            for i in range(args.warmup + args.repeats):
                # the generator's three stages, timed apart (== gen(x, emb)) to see where the time goes
                stamps = []
                for stage in ("encode", "denoise", "decode"):
                    sync()
                    stamps.append(time.perf_counter())
                    if stage == "encode":
                        z = gen.encode(x)
                    elif stage == "denoise":
                        z0 = gen.denoise(z, emb)
                    else:
                        sr = gen.decode(z0)
                sync()
                stamps.append(time.perf_counter())
                if i >= args.warmup:
                    times.append(stamps[-1] - stamps[0])
                    parts.append([b - a for a, b in zip(stamps, stamps[1:])])
        assert sr.shape == x.shape
        peak = (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda"
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        stages = {k: statistics.median(p[j] for p in parts) for j, k in enumerate(("encode", "unet", "decode"))}
        results.append(dict(size=size, median_s=statistics.median(times), min_s=min(times), times=times, peak_mib=peak,
                            stages=stages))
        print(f"  {args.arch} {size}px: median {statistics.median(times):.3f} s, peak {peak:.0f} MiB", file=sys.stderr)
    return dict(arch=args.arch, unet_source=source, params=params, build_s=build_s, rss_weights_mib=rss_weights,
                results=results)


def machine(device: str) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        cpu = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), cpu)
    except (OSError, subprocess.SubprocessError):
        pass
    desc = f"CPU: {cpu}, {os.cpu_count()} logical cores; torch {torch.__version__}; Python {platform.python_version()}"
    if device == "cuda" and torch.cuda.is_available():
        desc += f"; GPU: {torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}"
    return desc


def write_markdown(path: Path, runs: dict, args, total_s: float) -> None:
    tvt, ose = runs["tvt"], runs["osediff"]
    mem_kind = ("torch.cuda.max_memory_allocated (activations + weights on the GPU)" if args.device == "cuda"
                else "peak RSS of the worker process, resource.getrusage ru_maxrss (weights + activations, cumulative "
                     "over sizes run in increasing order)")
    lines = [
        "# Latency: TVT vs the OSEDiff architecture",
        "",
        f"Measured by `python benchmarks/latency.py {' '.join(sys.argv[1:])}` in one run ({total_s:.0f} s).",
        "",
        f"- Machine: {machine(args.device)}",
        f"- Device: {args.device}, dtype {args.dtype}, threads {args.threads or torch.get_num_threads()}, attention: "
        f"diffusers default (SDPA) for both, torch.compile {'on' if args.compile else 'off'}, channels_last "
        f"{'on' if args.channels_last else 'off'}, tiling {'on (768/256 px tiles)' if args.tiled else 'off (whole image)'}",
        f"- Timed: VAE encode + one UNet call + VAE decode for one image (batch 1), prompt embedding precomputed; "
        f"median of {args.repeats} after {args.warmup} warm-up.",
        "- Weights: random, full size, SD 2.1-base shapes (latency does not depend on the values). "
        f"TVT = VAE-D4 ({tvt['params']['vae'] / 1e6:.2f}M) + CE-UNet ({tvt['params']['unet'] / 1e6:.1f}M, {tvt['unet_source']}); "
        f"OSEDiff = VAE-D8 ({ose['params']['vae'] / 1e6:.2f}M) + SD UNet ({ose['params']['unet'] / 1e6:.1f}M). "
        "Merged LoRA adds no cost, so none is attached.",
        f"- Memory: {mem_kind}. Weights alone: TVT {tvt['rss_weights_mib']:.0f} MiB, OSEDiff {ose['rss_weights_mib']:.0f} MiB"
        + (" (RSS before the first image)." if args.device == "cpu" else "."),
        "",
        "| output | TVT median (s) | OSEDiff median (s) | TVT / OSEDiff (median) | TVT / OSEDiff (min) | TVT peak (MiB) | OSEDiff peak (MiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for a, b in zip(tvt["results"], ose["results"]):
        lines.append(f"| {a['size']}x{a['size']} | {a['median_s']:.3f} | {b['median_s']:.3f} | "
                     f"{a['median_s'] / b['median_s']:.2f} | {a['min_s'] / b['min_s']:.2f} | {a['peak_mib']:.0f} | {b['peak_mib']:.0f} |")
    ce_cfg = ce_unet_config()
    attn = ", ".join(
        f"{n}x{n}: CE-UNet {self_attention_macs(ce_cfg, n // 4, n // 4) / 1e12:.3f}T vs SD UNet "
        f"{self_attention_macs(SD21_UNET_CONFIG, n // 8, n // 8) / 1e12:.3f}T" for n in (512, 1024))
    lines += ["", "Self-attention matmul MACs per image (QK^T and AV, which the paper's FLOPs leave out; computed from "
              f"the configs): {attn}. At 512 px the CE-UNet's new full-resolution level attends over 128x128 = 16384 "
              "tokens, which is why its UNet stage is much slower than its 0.73T conv/linear MACs suggest."]
    lines += ["", "Where the time goes (median s per stage: VAE encode / UNet / VAE decode):", "",
              "| output | TVT enc / UNet / dec | OSEDiff enc / UNet / dec |", "|---|---|---|"]
    for a, b in zip(tvt["results"], ose["results"]):
        fa, fb = ("{encode:.3f} / {unet:.3f} / {decode:.3f}".format(**r["stages"]) for r in (a, b))
        lines.append(f"| {a['size']}x{a['size']} | {fa} | {fb} |")
    lines += ["", "All timings (s): " + "; ".join(
        f"{r['arch']} {x['size']}px " + ", ".join(f"{t:.3f}" for t in x["times"]) for r in (tvt, ose) for x in r["results"])]
    if args.device != "cuda":
        lines += [
            "",
            "**No GPU was available to this task**: the numbers above are CPU numbers only. The GPU path "
            "(`--device cuda --dtype bf16|fp16 --sizes 512 1024 2048 [--compile] [--channels-last]`, memory via "
            "torch.cuda.max_memory_allocated) is implemented but was not run; no GPU numbers are reported. "
            "CPU ratios at small sizes are not the paper's GPU ratios: at 128/256 px per-layer overheads weigh more "
            "and the CPU is shared with other jobs (the min ratio is the less contention-sensitive one).",
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="TVT vs OSEDiff latency and peak memory")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default=None, choices=sorted(DTYPES), help="default: fp32 on CPU, bf16 on GPU")
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="output sizes (default: CPU 128 256; GPU 512 1024 2048)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads on CPU (0 = torch default)")
    p.add_argument("--compile", action="store_true", help="torch.compile the UNet")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--tiled", action="store_true", help="latent + VAE tiling as the pipeline's defaults (for 1024/2048)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "latency.md"))
    p.add_argument("--worker", choices=["tvt", "osediff"], help=argparse.SUPPRESS)
    p.add_argument("--arch", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.dtype = args.dtype or ("bf16" if args.device == "cuda" else "fp32")
    args.sizes = sorted(args.sizes or ([512, 1024, 2048] if args.device == "cuda" else [128, 256]))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        args.arch = args.worker
        print(json.dumps(worker(args)))
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here; run with --device cpu", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    runs = {}
    base = [a for a in (argv if argv is not None else sys.argv[1:])]
    for arch in ("tvt", "osediff"):
        print(f"{arch} ...", file=sys.stderr)
        cmd = [sys.executable, __file__, *base, "--worker", arch]
        out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        sys.stderr.write(out.stderr[-2000:])
        if out.returncode:
            print(f"{arch} worker failed (exit {out.returncode})", file=sys.stderr)
            return 1
        runs[arch] = json.loads(out.stdout.strip().splitlines()[-1])
    write_markdown(Path(args.out), runs, args, time.perf_counter() - t0)
    print(Path(args.out).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
