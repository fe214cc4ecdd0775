"""Latency, throughput and achieved TFLOP/s: TVT (VAE-D4 + CE-UNet) vs the OSEDiff architecture (VAE-D8 + SD UNet),
eager and on the fast path (TVTPipeline.enable_fast_inference), side by side in one run.

    python benchmarks/latency.py --device cuda      # full-size models, bf16: 512x1, 1024x1, 512x8 and a folder
    python benchmarks/latency.py --threads 1        # a CPU: tiny models, fp32, 128x1, 768x1, 128x8 and a folder

Cases are SxB: S x S outputs, batch B. What is timed, per case: the generator (VAE encode + one UNet call per latent
tile group + VAE decode) on a (B, 3, S, S) input in [-1, 1], prompt embeddings precomputed; one sync per run, none
between stages; the median of --repeats after --warmup runs. Eager: the whole image at once (main's measurement);
fast: enable_fast_inference(compile, mode=--compile-mode, channels_last, sdpa_backend="auto", bounded_tiles,
tile_batch) with the tiling the pipeline picks (TVTPipeline.tiling_for). Compiled code is reset before each
new shape, so each case runs the graphs it would run alone (fixed shapes: CUDA graphs under mode "auto"); the
first call's time (compilation included) is reported. The "folder" case runs super_resolve_folder at batch B over
--folder-images random smooth images ((S/4)^2 PNGs -> S^2 PNGs: reading, PIL bicubic, prompt, colour fix and
writing included, process_size 0), once to warm up and once timed.

FLOPs = 2 x MACs that tvt.flops counts on a meta-device copy of the timed work (the same tiling): conv + linear,
and the attention matmuls (QK^T, AV), which the paper's FLOPs leave out; TFLOP/s = both / median time.
Memory: torch.cuda.max_memory_allocated over the timed runs (CUDA only). Weights are random (time does not depend
on their values); each (architecture, mode) runs in its own process. GPU rows of a CPU run say that they were not
measured; no estimate stands in for them.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from _machine import machine, not_measured

from tvt.errors import ConfigError
from tvt_scripts._cli import command

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ("tvt", "osediff")
MODES = ("eager", "fast")
GPU_CASES = ("512x1", "1024x1", "512x8", "folder512x8")  # the cases
CPU_CASES = ("128x1", "768x1", "128x8", "folder128x8")  # 768: the tiny models' bounded tiles
# the goals, for the fast path on an H100/H200: case -> (what, test on (tvt, osediff) rows)
GOALS = {
    "512x1": ("TVT <= 20 ms and TVT/OSEDiff <= 0.85", lambda t, o: t["median_s"] <= 0.020 and t["median_s"] / o["median_s"] <= 0.85),
    "1024x1": ("TVT/OSEDiff <= 1.0", lambda t, o: t["median_s"] / o["median_s"] <= 1.0),
    "folder512x8": ("TVT >= 80 images/s", lambda t, o: t["images_per_s"] >= 80),
}


def parse_case(case: str) -> tuple[bool, int, int]:
    """"512x8" -> (folder, side, batch); "folder512x8" is the folder run."""
    folder = case.startswith("folder")
    side, batch = case.removeprefix("folder").split("x")
    return folder, int(side), int(batch)


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------
def build(arch: str, size: str):
    """Random (vae, unet) of ``arch`` at SD 2.1-base shapes ("full") or the test shapes ("tiny")."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from tvt.models.ce_unet import ce_unet_config
    from tvt.models.sd21 import SD21_UNET_CONFIG, SD21_VAE_CONFIG
    from tvt.models.vae import build_vae_d4
    from tvt.testing import tiny_unet_config, tiny_vae_d4_kwargs, tiny_vae_d8_config

    torch.manual_seed(0)
    sd_unet = tiny_unet_config() if size == "tiny" else SD21_UNET_CONFIG
    if arch == "tvt":
        vae = build_vae_d4("d4", **(tiny_vae_d4_kwargs() if size == "tiny" else {}))
        return vae, UNet2DConditionModel(**ce_unet_config(sd_unet))
    return AutoencoderKL(**(tiny_vae_d8_config() if size == "tiny" else SD21_VAE_CONFIG)), UNet2DConditionModel(**sd_unet)


def build_pipeline(arch: str, size: str, device: torch.device, work: Path):
    """A TVTPipeline of random models; the text encoder has the UNet's width and one layer (its output is cached)."""
    from diffusers import DDPMScheduler
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from tvt.models.sd21 import SD21_TEXT_CONFIG
    from tvt.inference import TVTPipeline
    from tvt.testing import make_tiny_sd

    sd = make_tiny_sd(work / "sd")  # the tokenizer and scheduler; the tiny text encoder
    tok = CLIPTokenizer.from_pretrained(sd / "tokenizer")
    if size == "tiny":
        text = CLIPTextModel.from_pretrained(sd / "text_encoder")
    else:
        text = CLIPTextModel(CLIPTextConfig(**{**SD21_TEXT_CONFIG, "num_hidden_layers": 1}))
    with torch.device(device):
        vae, unet = build(arch, size)
    pipe = TVTPipeline.from_components(vae, unet, text, tok, DDPMScheduler.from_pretrained(sd, subfolder="scheduler"),
                                       architecture=arch, process_size=0)
    return pipe.to(device)  # the text encoder and the generator's alphas_cumprod too


def generator_flops(arch: str, size: str, batch: int, side: int, tiling: dict) -> dict:
    """conv + linear and attention FLOPs (2 x MACs, tvt.flops) of the timed generator work, on the meta device."""
    from diffusers import DDPMScheduler

    from tvt.flops import complexity
    from tvt.models.generator import OneStepGenerator, Tiling
    from tvt.models.sd21 import SD21_SCHEDULER_CONFIG

    with torch.device("meta"):
        vae, unet = build(arch, size)
        gen = OneStepGenerator(vae, unet, DDPMScheduler(**SD21_SCHEDULER_CONFIG).alphas_cumprod)
        t = Tiling(tiling["tile"], tiling["overlap"], tiling["batch"], tiling["vae_tile"])
        x = torch.zeros(batch, 3, side, side)
        emb = torch.zeros(batch, 77, unet.config.cross_attention_dim)
        c = complexity(gen, lambda: gen.decode(gen.denoise(gen.encode(x, tiling=t), emb, t), t))
    return dict(conv_linear=2 * c.flops, attention=2 * c.attention_flops)


# ---------------------------------------------------------------------------------------------
# One (architecture, mode) per process
# ---------------------------------------------------------------------------------------------
def worker(args) -> dict:
    from tvt.models.generator import tile_groups, tile_starts
    from tvt.inference import DTYPES

    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    work = Path(tempfile.mkdtemp(prefix="tvt-latency-"))
    t0 = time.perf_counter()
    pipe = build_pipeline(args.arch, args.size, device, work).to(dtype=dtype)
    if args.mode == "fast":
        pipe.enable_fast_inference(compile=args.compile_backend != "none", mode=args.compile_mode,
                                   backend=args.compile_backend if args.compile_backend != "none" else "inductor",
                                   bounded_tiles=True, tile_batch=args.tile_batch)
    gen = pipe.generator
    out = dict(arch=args.arch, mode=args.mode, build_s=time.perf_counter() - t0, cases={},
               unet_params=sum(p.numel() for p in pipe.unet.parameters()),
               vae_params=sum(p.numel() for p in pipe.vae.parameters()),
               unet_dtype=str(pipe.unet.dtype), vae_dtype=str(pipe.vae.dtype),
               fast=repr(pipe.fast), sdpa=None)
    emb1 = pipe.encode_prompt("")  # (1, 77, D)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    shape = None
    for case in args.cases:
        folder, side, batch = parse_case(case)
        if (side, batch) != shape:  # each shape compiles its own graphs (a folder case reuses its batch case's)
            torch._dynamo.reset()
            shape = (side, batch)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if args.mode == "fast":
            t = pipe.tiling_for(side, side, upscale=4)
        else:  # the whole image, as main's measurement
            t = pipe.tiling_for(side, side, upscale=4, tile_size=0, vae_tile_size=0)
        latent = side // pipe.vae_factor
        tiles = len(tile_starts(latent, t.tile, t.overlap)) ** 2 if 0 < t.tile < latent else 1
        tiling = dict(tile=t.tile, overlap=t.overlap, batch=t.batch, tiles=tiles, unet_calls=len(tile_groups(tiles, t.batch)),
                      vae_tile=t.vae_tile if 0 < t.vae_tile < side else 0)
        row = dict(case=case, side=side, batch=batch, tiling=tiling)
        if folder:
            row.update(time_folder(pipe, work / case, side, batch, args, sync))
        else:
            x = torch.rand(batch, 3, side, side, device=device) * 2 - 1
            emb = emb1.repeat(batch, 1, 1)
            times = []
            with torch.inference_mode():
                for i in range(args.warmup + args.repeats):
                    if i == args.warmup and device.type == "cuda":
                        torch.cuda.reset_peak_memory_stats()
                    sync()
                    start = time.perf_counter()
                    sr = gen.decode(gen.denoise(gen.encode(x, tiling=t), emb, t), t)
                    sync()
                    times.append(time.perf_counter() - start)
            assert sr.shape == x.shape
            timed = times[args.warmup:]
            row.update(first_s=times[0], median_s=statistics.median(timed), min_s=min(timed), times=timed,
                       images_per_s=batch / statistics.median(timed),
                       flops=generator_flops(args.arch, args.size, batch, side, tiling))
            if device.type == "cuda":
                row["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        out["cases"][case] = row
        out["sdpa"] = gen.sdpa_choices or None
        print(f"  {args.arch} {args.mode} {case}: " + (f"{row['median_s'] * 1e3:.1f} ms" if row.get("median_s")
              else f"{row['images_per_s']:.1f} images/s"), file=sys.stderr)
    return out


def time_folder(pipe, work: Path, side: int, batch: int, args, sync) -> dict:
    """super_resolve_folder at batch ``batch`` over --folder-images smooth random (side/4)^2 PNGs."""
    import torch.nn.functional as F
    from PIL import Image

    from tvt.inference import super_resolve_folder

    src = work / "lr"
    src.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    lr = side // 4
    for i in range(args.folder_images):  # smooth content compresses as photos do; noise would not
        im = F.interpolate(torch.rand(1, 3, lr // 8, lr // 8, generator=g), size=(lr, lr), mode="bicubic")
        Image.fromarray((im[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()).save(src / f"{i:04d}.png")
    kw = dict(upscale=4, batch_size=batch, progress=False, overwrite=True)
    t0 = time.perf_counter()
    super_resolve_folder(pipe, src, work / "warm", **kw)  # compiles, fills the prompt cache
    first = time.perf_counter() - t0
    if pipe.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync()
    res = super_resolve_folder(pipe, src, work / "sr", **kw)
    sync()
    assert len(res.written) == args.folder_images and not res.failed, res.failed
    row = dict(first_s=first, seconds=res.seconds, images_per_s=len(res.written) / res.seconds,
               median_s=None, images=len(res.written))
    if pipe.device.type == "cuda":
        row["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return row


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
def versions() -> str:
    import diffusers

    cuda = f", CUDA {torch.version.cuda}" if torch.version.cuda else ""
    cudnn = f", cuDNN {torch.backends.cudnn.version()}" if torch.cuda.is_available() else ""
    return f"torch {torch.__version__}{cuda}{cudnn}, diffusers {diffusers.__version__}, Python {platform.python_version()}"


def _tiling(t: dict) -> str:
    latent = "whole" if t["tiles"] == 1 else f"{t['tiles']} of {t['tile']}/{t['overlap']} in {t['unet_calls']} calls"
    return f"{latent}; VAE {'whole' if not t['vae_tile'] else t['vae_tile']}"


def _row(arch: str, mode: str, r: dict) -> str:
    if r.get("median_s") is None:  # folder
        mem = f"{r['peak_mib']:.0f}" if "peak_mib" in r else "-"
        return (f"| {r['case']} | {mode} | {arch} | {_tiling(r['tiling'])} | {r['seconds'] / r['images'] * 1e3:.1f} per image "
                f"| {r['images_per_s']:.1f} | - | - | {mem} | {r['first_s']:.1f} |")
    f = r["flops"]
    total = f["conv_linear"] + f["attention"]
    mem = f"{r['peak_mib']:.0f}" if "peak_mib" in r else "-"
    return (f"| {r['case']} | {mode} | {arch} | {_tiling(r['tiling'])} | {r['median_s'] * 1e3:.1f} | {r['images_per_s']:.1f} "
            f"| {total / r['median_s'] / 1e12:.3g} | {f['conv_linear'] / 1e9:.4g} + {f['attention'] / 1e9:.4g} | {mem} "
            f"| {r['first_s']:.1f} |")


HEADER = ["| case | mode | arch | latent tiling; VAE tiling | median ms | images/s | TFLOP/s | GFLOP "
          "(conv+linear + attention) | peak MiB | first call s |", "|---|---|---|---|---|---|---|---|---|---|"]


def write_markdown(path: Path, runs: dict, args, total_s: float, command: str) -> None:
    on_gpu = args.device == "cuda"
    first = runs[args.archs[0], args.modes[0]]
    lines = [
        "# Latency, throughput and TFLOP/s: TVT vs the OSEDiff architecture, eager and fast path",
        "",
        f"Written by `{command}` in one run ({total_s:.0f} s, {time.strftime('%Y-%m-%d %H:%M %Z')}).",
        "",
        f"- Machine: {machine(args.device)}",
        f"- Versions: {versions()}",
        f"- Device {args.device}, dtype {args.dtype} (UNet {first['unet_dtype']}, VAE {first['vae_dtype']}), "
        f"threads {args.threads or torch.get_num_threads()}; {args.size} models with random weights: " + ", ".join(
            f"{a}: UNet {runs[a, args.modes[0]]['unet_params'] / 1e6:.1f}M, VAE {runs[a, args.modes[0]]['vae_params'] / 1e6:.2f}M"
            for a in args.archs),
        f"- Fast path: `{runs.get((args.archs[0], 'fast'), {}).get('fast', 'not run')}`; torch.compile backend "
        f"{args.compile_backend}; SDPA order chosen: "
        + "; ".join(f"{a}: " + ", ".join(f"{k}: {v}" for k, v in (runs[a, "fast"]["sdpa"] or {}).items())
                    for a in args.archs if (a, "fast") in runs),
        f"- Timed: the generator on a (B, 3, S, S) input, median of {args.repeats} after {args.warmup} warm-up runs, "
        "one sync per run; eager = the whole image; fast = the pipeline's tiling. Folder: super_resolve_folder over "
        f"{args.folder_images} PNGs at batch B, after a warm-up pass (I/O, PIL bicubic, colour fix included).",
        "- TFLOP/s: (conv + linear + attention-matmul FLOPs of the timed work, tvt.flops, FLOPs = 2 x MACs) / median "
        "time. GroupNorm, activations and other elementwise work are not counted.",
        "",
        f"## {args.device.upper()} ({args.size} models, {args.dtype})",
        "",
        *HEADER,
    ]
    for case in args.cases:
        for mode in args.modes:
            for arch in args.archs:
                lines.append(_row(arch, mode, runs[arch, mode]["cases"][case]))
    if set(ARCHS) <= set(args.archs):
        lines += ["", "Same-run ratios, TVT / OSEDiff (median time; folder: time per image):", "",
                  "| case | " + " | ".join(args.modes) + " | goal (fast path, H100/H200) |",
                  "|---|" + "---|" * (len(args.modes) + 1)]
        for case in args.cases:
            cells = []
            for mode in args.modes:
                t, o = (runs[a, mode]["cases"][case] for a in ARCHS)
                cells.append(f"{o['images_per_s'] / t['images_per_s']:.2f}")
            goal = "-"
            if case in GOALS and on_gpu and "fast" in args.modes:
                t, o = (runs[a, "fast"]["cases"][case] for a in ARCHS)
                goal = f"{GOALS[case][0]}: {'met' if GOALS[case][1](t, o) else 'not met'}"
            cells.append(goal)
            lines.append(f"| {case} | " + " | ".join(cells) + " |")
    if not on_gpu:
        lines += ["", "## CUDA (full-size models, bf16): the issue's cases", "",
                  f"{not_measured().capitalize()}. `python benchmarks/latency.py --device cuda` fills these rows; "
                  "no estimate stands in for them.", "", *HEADER]
        for case in GPU_CASES:
            for mode in MODES:
                for arch in ARCHS:
                    lines.append(f"| {case} | {mode} | {arch} | {not_measured()} |" + " |" * 6)
        lines += ["", "Goals (fast path, H100/H200): " + "; ".join(f"{c}: {g} ({not_measured()})" for c, (g, _) in GOALS.items())]
        lines += ["", "CPU numbers are not GPU numbers: the tiny models and the shared CPU say nothing about the GPU "
                  "ratios; this run shows that every path of the benchmark works end to end."]
    lines += ["", "All timed runs (ms): " + "; ".join(
        f"{a} {m} {c}: " + ", ".join(f"{t * 1e3:.1f}" for t in runs[a, m]["cases"][c]["times"])
        for a in args.archs for m in args.modes for c in args.cases if "times" in runs[a, m]["cases"][c])]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
@dataclass
class LatencyConfig:
    device: str = "cpu"  # cpu | cuda
    size: Optional[str] = None  # tiny | full models; default: full on cuda, tiny on cpu
    dtype: Optional[str] = None  # fp32 | fp16 | bf16; default: bf16 on cuda, fp32 on cpu
    cases: list = field(default_factory=list)  # SxB and folderSxB; default: GPU_CASES on cuda, CPU_CASES on cpu
    archs: list = field(default_factory=lambda: list(ARCHS))
    modes: list = field(default_factory=lambda: list(MODES))
    warmup: Optional[int] = None  # untimed runs first (default: 3 on cuda, 2 on cpu)
    repeats: Optional[int] = None  # timed runs (default: 10 on cuda, 3 on cpu)
    folder_images: Optional[int] = None  # images of the folder case (default: 64 on cuda, 16 on cpu)
    compile_mode: str = "auto"  # torch.compile mode of the fast path (tvt.inference.fast.COMPILE_MODES)
    compile_backend: str = "inductor"  # inductor | aot_eager | none (the fast path without compile)
    tile_batch: int = 16  # latent tiles per UNet call on the fast path
    threads: int = 0  # torch threads (0 = torch's default)
    out: str = str(ROOT / "benchmarks" / "results" / "latency.md")
    worker: list = field(default_factory=list)  # internal: [arch, mode] run by a worker process


def resolve(args: LatencyConfig) -> LatencyConfig:
    """The device-dependent defaults filled in, the choices checked."""
    gpu = args.device == "cuda"
    args.size = args.size or ("full" if gpu else "tiny")
    args.dtype = args.dtype or ("bf16" if gpu else "fp32")
    args.cases = [str(c) for c in args.cases] or list(GPU_CASES if gpu else CPU_CASES)
    args.repeats = args.repeats or (10 if gpu else 3)
    args.warmup = args.warmup if args.warmup is not None else (3 if gpu else 2)
    args.folder_images = args.folder_images or (64 if gpu else 16)
    for key, value, choices in (("device", [args.device], ("cpu", "cuda")), ("size", [args.size], ("tiny", "full")),
                                ("dtype", [args.dtype], ("fp32", "fp16", "bf16")), ("archs", args.archs, ARCHS),
                                ("modes", args.modes, MODES)):
        if not set(value) <= set(choices):
            raise ConfigError(f"{key} must be among {', '.join(choices)}, got {', '.join(map(str, value))}")
    for case in args.cases:
        parse_case(case)
    return args


@command(LatencyConfig)
def main(args: LatencyConfig) -> int:
    argv = sys.argv[1:]  # the command line, handed to the workers and written into the results
    resolve(args)
    if args.worker:
        args.arch, args.mode = args.worker
        print(json.dumps(worker(args)))
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here; run without --device cuda", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    runs = {}
    for mode in args.modes:
        for arch in args.archs:
            print(f"{arch} {mode} ...", file=sys.stderr)
            cmd = [sys.executable, __file__, *argv, f"worker=[{arch},{mode}]"]
            out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
            sys.stderr.write(out.stderr[-3000:])
            if out.returncode:
                print(f"{arch} {mode} worker failed (exit {out.returncode})", file=sys.stderr)
                return 1
            runs[arch, mode] = json.loads(out.stdout.strip().splitlines()[-1])
    command = "python benchmarks/latency.py" + "".join(f" {a}" for a in argv)
    write_markdown(Path(args.out), runs, args, time.perf_counter() - t0, command)
    print(Path(args.out).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
