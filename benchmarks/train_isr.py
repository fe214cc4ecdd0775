"""One ISR training step (paper Sec. 3.3): generator (VAE-D4 + CE-UNet LoRA) + L2 + LPIPS + VSD (real/fake SD UNets),
generator and fake-UNet optimizer steps. Random weights with the SD 2.1 shapes (no downloads); step time + peak memory.

    python benchmarks/train_isr.py --size full --device cuda          # 512 crops, batch 2, bf16 (the official scale)
    python benchmarks/train_isr.py --size reduced --device cpu        # tiny widths, 128 crops: a CPU smoke run
"""
from __future__ import annotations

import argparse
import copy
import platform
import resource
import subprocess
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DConditionModel
from peft import LoraConfig

from tvt.flops import SD21_UNET_CONFIG
from tvt.losses.perceptual import LPIPSLoss
from tvt.losses.vsd import VSDLoss
from tvt.models.ce_unet import build_ce_unet_from_sd
from tvt.models.generator import OneStepGenerator
from tvt.models.lora import add_ce_unet_lora, lora_target_modules
from tvt.models.vae import build_vae_d4
from tvt.testing import SD21_SCHEDULER, tiny_unet_config, tiny_vae_d4_kwargs

SIZES = {  # unet config, vae overrides, crop, text dim
    "full": (SD21_UNET_CONFIG, {}, 512, 1024),
    "reduced": (tiny_unet_config(), tiny_vae_d4_kwargs(), 128, 32),
}


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except Exception:
        return platform.processor() or "unknown CPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="full")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--output", default="benchmarks/results/train_isr.md")
    args = ap.parse_args()
    torch.manual_seed(0)
    dev = torch.device(args.device)
    unet_cfg, vae_kw, crop, text_dim = SIZES[args.size]

    sd_unet = UNet2DConditionModel(**unet_cfg)
    vae = build_vae_d4("d4", **vae_kw).requires_grad_(False)
    ce_unet = build_ce_unet_from_sd(sd_unet)
    add_ce_unet_lora(ce_unet, rank=4)
    ce_unet.enable_gradient_checkpointing()
    sched = DDPMScheduler(**SD21_SCHEDULER)
    gen = OneStepGenerator(vae, ce_unet, sched.alphas_cumprod, 999).to(dev)
    real = sd_unet.requires_grad_(False).to(dev).eval()
    fake = copy.deepcopy(real)
    fake.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian", target_modules=lora_target_modules(fake)))
    fake.enable_gradient_checkpointing()
    vsd = VSDLoss(real, fake, sched, cfg_scale=7.5, patches=True).to(dev)
    lpips = LPIPSLoss("vgg", "random").to(dev)
    gen_params = [p for p in gen.parameters() if p.requires_grad]
    opt_g = torch.optim.AdamW(gen_params, lr=5e-5)
    opt_f = torch.optim.AdamW([p for p in fake.parameters() if p.requires_grad], lr=5e-5)
    n_train = sum(p.numel() for p in gen_params)
    hr = torch.rand(args.batch, 3, crop, crop, device=dev) * 2 - 1
    lr_up = F.interpolate(F.interpolate(hr, scale_factor=0.25, mode="bicubic"), size=(crop, crop), mode="bicubic")
    emb = torch.randn(args.batch, 77, text_dim, device=dev)
    neg = torch.randn(args.batch, 77, text_dim, device=dev)
    amp = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=args.dtype == "bf16")

    def step() -> None:
        with amp:
            sr, z0 = gen(lr_up, emb)
            loss = F.mse_loss(sr.float(), hr) + 2 * lpips(sr, hr) + vsd.generator_loss(z0, emb, neg)[0]
        loss.backward()
        opt_g.step(), opt_g.zero_grad(set_to_none=True)
        with amp:
            fl = vsd.fake_loss(z0, emb)[0]
        fl.backward()
        opt_f.step(), opt_f.zero_grad(set_to_none=True)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up (optimizer state allocation)
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    times.sort()
    if dev.type == "cuda":
        mem = f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB (torch.cuda.max_memory_allocated)"
        machine = torch.cuda.get_device_name()
    else:
        mem = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB (process peak RSS)"
        machine = f"{cpu_name()}, {torch.get_num_threads()} threads"
    text = f"""# One ISR training step (`benchmarks/train_isr.py`)

Command: `python benchmarks/train_isr.py --size {args.size} --device {args.device} --dtype {args.dtype} --batch {args.batch} --steps {args.steps}`

Machine: {machine}; torch {torch.__version__}. Size `{args.size}`: {crop}x{crop} crops, batch {args.batch}, {args.dtype},
gradient checkpointing, CE-UNet LoRA rank 4 + replicated levels ({n_train / 1e6:.2f}M trainable), VSD on 2x2 latent patches
with classifier-free guidance, LPIPS with a random VGG backbone (same cost as the pretrained one). Random weights.

| step time (min) | step time (median) | peak memory |
|---|---|---|
| {times[0]:.3f} s | {times[len(times) // 2]:.3f} s | {mem} |
"""
    if dev.type != "cuda":
        text += ("\n**No GPU was available for this run**: the numbers above are CPU numbers at the stated size, not the\n"
                 "GPU step time or memory of the official 512x512 bf16 setting. Run `--size full --device cuda` on a GPU for those.\n")
    Path(args.output).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
