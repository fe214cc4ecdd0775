"""Step time and peak memory of one-step ISR training, timing the code users run: ``Trainer.optimizer_step`` of
``ISRStage`` built from configs/isr.yaml, on random weights with SD 2.1-base's shapes (no download).

What is timed: one optimizer step of one micro-batch = ``ISRStage.train_step`` (Real-ESRGAN degradation, CLIP
prompt embedding, VAE-D4 + CE-UNet generator, L2 + LPIPS + VSD with classifier-free guidance, the fake UNet's
loss, both backward passes) + gradient clipping + both AdamW steps + the lr schedules, data loading included.
Median over --steps after --warmup steps.

    python benchmarks/train_isr.py --size full                    # GPU: batch 2, 512x512 crops, bf16
    python benchmarks/train_isr.py --size tiny --device cpu       # tiny widths, 64x64 crops: runs anywhere

The random SD 2.1 folder, VAE-D4 and HR images are written once under --work (full: about 3 GB) and reused.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

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


def measure(args, sd: Path, vae: Path, hr: Path, runs: Path) -> tuple[list[float], str, int]:
    from tvt.config import load_config
    from tvt.train.core import Trainer
    from tvt.train.isr import ISRConfig, ISRStage

    crop, extra = SIZES[args.size]
    cfg = load_config(ISRConfig, [
        "--config", str(ROOT / "configs" / "isr.yaml"), f"sd_model={sd}", f"vae_d4={vae}", f"data.sources=[{hr}]",
        "data.resize_sources=[]", f"data.crop_size={crop}", "data.val_hr=null", "data.val_lr=null",
        "prompt.extractor=fixed", "inference_prompt.extractor=fixed", "loss.lpips_backbone=random",
        f"train.batch_size={args.batch}", "train.grad_accum=1", f"train.mixed_precision={PRECISION[args.dtype]}",
        f"train.cpu={args.device == 'cpu'}", f"train.output_dir={runs}", "train.tracker=none", "train.num_workers=0",
        "train.val_every=0", "train.export=false", *extra])
    trainer = Trainer(ISRStage(cfg))
    batches = trainer.start()
    cuda = trainer.accelerator.device.type == "cuda"
    times = []
    for i in range(args.warmup + args.steps):
        if cuda and i == args.warmup:
            torch.cuda.reset_peak_memory_stats()  # from here: weights + optimizer states + one step's activations
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        trainer.optimizer_step(batches)
        if cuda:
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    trainable = sum(p.numel() for opt in trainer.stage.optimizers for g in opt.param_groups for p in g["params"])
    if cuda:
        memory = f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB (torch.cuda.max_memory_allocated)"
    else:
        memory = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB (peak RSS of the process)"
    return times, memory, trainable


def machine(device: str) -> str:
    if device.startswith("cuda"):
        return f"GPU: {torch.cuda.get_device_name()}"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        name = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        name = platform.processor() or "unknown CPU"
    return f"CPU: {name}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="full")
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="default: bf16 on cuda, fp32 on cpu")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--work", default="runs/benchmark_train_isr", help="where the random models are kept")
    ap.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "train_isr.md"))
    args = ap.parse_args()
    args.dtype = args.dtype or ("bf16" if args.device == "cuda" else "fp32")
    load_before = os.getloadavg()[0]
    command = "python benchmarks/train_isr.py " + " ".join(sys.argv[1:])
    # written in a child process, so that the peak RSS below is training's, not that of creating the models
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        sd, vae, hr = pool.submit(write_inputs, Path(args.work), args.size).result()
    with tempfile.TemporaryDirectory() as runs:
        times, memory, trainable = measure(args, sd, vae, hr, Path(runs))
    crop = SIZES[args.size][0]
    weights = ("SD 2.1-base's shapes (`tvt.testing.make_random_sd`) and a full-size VAE-D4" if args.size == "full" else
               "SD 2.1-base's layout at tiny widths (`tvt.testing.make_random_sd(size='tiny')`) and a tiny VAE-D4")
    setting = f"{args.size}: {crop}x{crop}, batch {args.batch}, {args.dtype}"
    timing = f"{statistics.median(times):.3f} s ({min(times):.3f} s)"
    rows = [f"| {setting} | {machine(args.device)} | {timing} | {memory} |"]
    if args.device == "cpu":
        rows.insert(0, f"| full: 512x512, batch {args.batch}, bf16 | GPU | not measured: no GPU on this machine | "
                       "not measured: no GPU on this machine |")
    text = f"""# One ISR training step (`benchmarks/train_isr.py`)

Command: `{command}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})

{TIMED}

Config: configs/isr.yaml (gradient checkpointing, CE-UNet LoRA rank 4 + replicated levels: {trainable / 1e6:.2f}M
trainable parameters in both optimizers, VSD on 2x2 latent patches, cfg 7.5), except: random weights, {weights};
`prompt.extractor=fixed` (the RAM tagger of the official recipe needs its weights: its time is not included); LPIPS
on a random VGG (same cost as the pretrained one); random-noise HR images, loaded in the main process; one
micro-batch per optimizer step (the official recipe accumulates 2).

| setting | machine; torch {torch.__version__} | step time: median (min), {args.steps} after {args.warmup} | peak memory |
|---|---|---|---|
""" + "\n".join(rows) + "\n"
    if args.device == "cpu" and load_before > 0.5 * os.cpu_count():
        text += (f"\nOther jobs shared the CPU (load average {load_before:.1f} on {os.cpu_count()} cores before the run): "
                 "the times are inflated, the min less than the median.\n")
    Path(args.output).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
