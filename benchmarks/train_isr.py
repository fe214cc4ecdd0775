"""Step time, data wait and peak memory of a training step, timing the code users run: ``Trainer.optimizer_step``
of ``ISRStage`` (configs/isr.yaml) or of VAE stage 1 (``VAETransferStage``, configs/vae_stage1.yaml), on random
weights with SD 2.1-base's shapes (no download).

What is timed: one optimizer step of one micro-batch = the stage's ``train_step`` (ISR: CLIP prompt embedding,
VAE-D4 + CE-UNet generator, L2 + LPIPS + VSD with classifier-free guidance, the fake UNet's loss, both backward
passes; VAE stage 1: the frozen D8 encoder, the D4 decoder, L1 + LPIPS (+ PatchGAN once it starts)) + clipping +
the AdamW steps + the lr schedules, with the data loader feeding it (ISR: the Real-ESRGAN degradation runs per
sample in its --workers processes). Median over --steps after --warmup steps; "data wait" is the time the step
waited for its batch (the Trainer's ``data_wait`` log).

    python benchmarks/train_isr.py --size full --workers 8                # GPU: ISR, batch 2, 512x512 crops, bf16
    python benchmarks/train_isr.py --size full --stage vae_stage1 --batch 32 --workers 8   # GPU: VAE stage 1
    python benchmarks/train_isr.py --size tiny --device cpu               # tiny widths, 64x64 crops: runs anywhere

The random SD 2.1 folder, VAE-D4 and HR images are written once under --work (full: about 3 GB) and reused.
"""
from __future__ import annotations

import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from _machine import machine, not_measured

from tvt.errors import ConfigError
from tvt_scripts._cli import command

ROOT = Path(__file__).resolve().parents[1]
SIZES = {  # crop, config overrides beyond configs/isr.yaml's
    "full": (512, []),
    "tiny": (64, ["data.degradation=tiny"]),
}
TIMED = __doc__.split("\n\n")[1]  # the paragraph above, repeated in the results
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
PRECISION = {"bf16": "bf16", "fp16": "fp16", "fp32": "'no'"}  # train.mixed_precision


def write_inputs(work: Path, size: str) -> tuple[Path, Path, Path]:
    """Random SD 2.1 folder, VAE-D4 and four random HR images of ``size``; written once."""
    from PIL import Image

    from tvt.models.vae import build_vae_d4
    from tvt.testing import make_random_sd, tiny_vae_d4_kwargs

    sd, vae, hr = work / f"sd21-{size}", work / f"vae_d4-{size}", work / f"hr-{size}"
    if not (sd / "model_index.json").is_file():
        make_random_sd(sd, size, dtype=torch.bfloat16)
    if not (vae / "config.json").is_file():
        build_vae_d4("d4", **({} if size == "full" else tiny_vae_d4_kwargs())).save_pretrained(vae)
    if not hr.is_dir():
        hr.mkdir(parents=True)
        g = torch.Generator().manual_seed(0)
        for i in range(4):
            pixels = torch.randint(0, 256, (SIZES[size][0], SIZES[size][0], 3), generator=g, dtype=torch.uint8)
            Image.fromarray(pixels.numpy()).save(hr / f"{i}.png")
    return sd, vae, hr


def make_stage(args, sd: Path, vae: Path, hr: Path, runs: Path):
    """The stage users train, from its paper-scale config with random weights and the benchmark's batch."""
    from tvt.config import load_config

    crop, extra = SIZES[args.size]
    common = [f"data.sources=[{hr}]", f"data.crop_size={crop}", "loss.lpips_backbone=random",
              f"train.batch_size={args.batch}", "train.grad_accum=1", f"train.mixed_precision={PRECISION[args.dtype]}",
              f"train.cpu={args.device == 'cpu'}", f"train.output_dir={runs}", "train.tracker=none",
              f"train.num_workers={args.workers}", "train.val_every=0", "train.export=false", "train.scale_lr=false"]
    if args.stage == "vae_stage1":
        from tvt.train.vae_transfer import VAETransferConfig, VAETransferStage

        vae_kwargs = [] if args.size == "full" else ["vae_kwargs={block_out_channels: [16, 32, 32], norm_num_groups: 8}"]
        return VAETransferStage(load_config(VAETransferConfig, [
            "--config", str(ROOT / "configs" / "vae_stage1.yaml"), f"sd_model={sd}", "data.val_dir=null",
            *vae_kwargs, *common]))
    from tvt.train.isr import ISRConfig, ISRStage

    return ISRStage(load_config(ISRConfig, [
        "--config", str(ROOT / "configs" / "isr.yaml"), f"sd_model={sd}", f"vae_d4={vae}",
        "data.val_hr=null", "data.val_lr=null", "prompt.extractor=fixed", "inference_prompt.extractor=fixed",
        f"frozen_dtype={args.frozen_dtype}", *common, *extra]))


def measure(args, sd: Path, vae: Path, hr: Path, runs: Path) -> dict:
    from tvt.train.memory import memory_by_category
    from tvt.train.trainer import Trainer

    trainer = Trainer(make_stage(args, sd, vae, hr, runs))
    batches = trainer.start()
    cuda = trainer.accelerator.device.type == "cuda"
    times, waits = [], []
    for i in range(args.warmup + args.steps):
        if cuda and i == args.warmup:
            torch.cuda.reset_peak_memory_stats()  # from here: weights + optimizer states + one step's activations
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        logs = trainer.optimizer_step(batches)
        if cuda:
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
            waits.append(logs["data_wait"] if logs else float("nan"))
    stage = trainer.stage
    trainable = sum(p.numel() for opt in stage.optimizers for g in opt.param_groups for p in g["params"])
    parts = memory_by_category([trainer.accelerator.unwrap_model(m) for m in stage.frozen_modules()], stage.optimizers)
    if cuda:
        memory = f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB (torch.cuda.max_memory_allocated)"
    else:
        memory = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB (peak RSS of the process)"
    return {"times": times, "waits": waits, "memory": memory, "trainable": trainable, "parts": parts}


@dataclass
class TrainStepBenchConfig:
    stage: str = "isr"  # isr | vae_stage1
    size: str = "full"  # full | tiny
    device: str = "cuda" if torch.cuda.is_available() else "cpu"  # cuda | cpu
    dtype: Optional[str] = None  # bf16 | fp16 | fp32; default: bf16 on cuda, fp32 on cpu
    batch: int = 2  # per-process micro-batch (the paper: ISR 2, VAE 32)
    workers: int = 2  # DataLoader worker processes (train.num_workers)
    frozen_dtype: str = "compute"  # ISR: frozen weights' dtype (compute | fp32)
    steps: int = 5
    warmup: int = 2
    work: str = "runs/benchmark_train_isr"  # where the random models are kept
    output: Optional[str] = None  # default: benchmarks/results/train_<stage>.md


CHOICES = {"stage": ("isr", "vae_stage1"), "size": tuple(SIZES), "device": ("cuda", "cpu"),
           "dtype": (None, *DTYPES), "frozen_dtype": ("compute", "fp32")}


@command(TrainStepBenchConfig)
def main(args: TrainStepBenchConfig) -> int:
    for key, choices in CHOICES.items():
        if getattr(args, key) not in choices:
            raise ConfigError(f"{key} must be one of {', '.join(map(str, choices))}, got '{getattr(args, key)}'")
    args.output = args.output or str(ROOT / "benchmarks" / "results" / f"train_{args.stage}.md")
    args.dtype = args.dtype or ("bf16" if args.device == "cuda" else "fp32")
    load_before = os.getloadavg()[0]
    command = "python benchmarks/train_isr.py " + " ".join(sys.argv[1:])
    # written in a child process, so that the peak RSS below is training's, not that of creating the models
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        sd, vae, hr = pool.submit(write_inputs, Path(args.work), args.size).result()
    with tempfile.TemporaryDirectory() as runs:
        res = measure(args, sd, vae, hr, Path(runs))
    times, waits, parts = res["times"], res["waits"], res["parts"]
    crop = SIZES[args.size][0]
    weights = ("SD 2.1-base's shapes (`tvt.testing.make_random_sd`) and a full-size VAE-D4" if args.size == "full" else
               "SD 2.1-base's layout at tiny widths (`tvt.testing.make_random_sd(size='tiny')`) and a tiny VAE-D4")
    setting = f"{args.size}: {crop}x{crop}, batch {args.batch}, {args.dtype}, {args.workers} workers"
    timing = f"{statistics.median(times):.3f} s ({min(times):.3f} s)"
    wait = statistics.median(waits)
    gib = {k: v / 2**30 for k, v in parts.items()}
    held = (f"trainable {gib['trainable']:.3f} + gradients {gib['gradients']:.3f} + optimizer {gib['optimizer_state']:.3f}"
            f" + frozen {gib['frozen']:.3f} (" + ", ".join(f"{k[7:]} {v:.3f}" for k, v in gib.items() if k.startswith("frozen_"))
            + ") GiB")
    rows = [f"| {setting} | {machine(args.device)}, {torch.get_num_threads()} threads | {timing} | {wait:.3f} s ({wait / statistics.median(times):.1%}) "
            f"| {res['memory']}; {held} |"]
    if args.device == "cpu":
        full = "512x512, batch 2, bf16" if args.stage == "isr" else "512x512, batch 32, bf16"
        rows.insert(0, f"| full: {full} | GPU | {not_measured()} | not measured | not measured |")
    what = ("configs/isr.yaml (gradient checkpointing, CE-UNet LoRA rank 4 + replicated levels, VSD on 2x2 latent "
            f"patches, cfg 7.5; frozen weights: frozen_dtype={args.frozen_dtype})" if args.stage == "isr" else
            "configs/vae_stage1.yaml (the D4 decoder under the frozen D8 encoder; L1 + LPIPS, GAN from step 50001)")
    text = f"""# One training step: {args.stage} (`benchmarks/train_isr.py`)

Command: `{command}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})

{TIMED}

Config: {what}: {res['trainable'] / 1e6:.2f}M trainable parameters in its optimizers; except: random weights,
{weights}; `prompt.extractor=fixed` (the RAM tagger of the official recipe needs its weights: its time is not
included); LPIPS on a random VGG (same cost as the pretrained one); random-noise HR images; one micro-batch per
optimizer step (the official ISR recipe accumulates 2).

| setting | machine; torch {torch.__version__} | step time: median (min), {args.steps} after {args.warmup} | data wait: median (share of the step) | peak memory; parameters and optimizer state held |
|---|---|---|---|---|
""" + "\n".join(rows) + "\n"
    if args.device == "cpu" and load_before > 0.5 * os.cpu_count():
        text += (f"\nOther jobs shared the CPU (load average {load_before:.1f} on {os.cpu_count()} cores before the run): "
                 "the times are inflated, the min less than the median.\n")
    Path(args.output).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
