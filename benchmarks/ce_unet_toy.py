"""Table 7 in miniature (S1 vs S4 vs TVT), on CPU: the same tiny SD UNet fed VAE-D8 or VAE-D4 latents.

    S1   VAE-D8 + SD UNet          architecture=osediff   (the one-step baseline's layout)
    S4   VAE-D4 + SD UNet          architecture=s4        (the UNet at the D4 latent's 2x resolution)
    TVT  VAE-D4 + CE-UNet          architecture=tvt

Each one-step model is trained by configs/tiny/isr.yaml (L2 + LPIPS + VSD, t = 1, Real-ESRGAN degradation on DRealSR
HR crops) for the same number of steps from the same seed, on the toy VAEs (a tiny VAE-D8 teacher, TVT stages 1 and
2): by default the ones make demo starts from (data/samples/toy), or any folder of that layout (--vaes;
`python scripts/toy.py ship=DIR` writes one). Evaluation on held-out RealSR
pairs (never trained on; LR center crops, x4): PSNR-Y and SSIM-Y (pyiqa protocol) against bicubic, and the UNet's
multiply-accumulates per image (tvt.flops, attention matmuls included) at the toy size and at 512x512 with SD 2.1's
shapes (the paper's Table 7 FLOPs column). The UNet and text encoder are tiny and random: quality numbers check
which layout learns faster from the same start, not the paper's values.

    python benchmarks/ce_unet_toy.py --steps 300 [--vaes data/samples/toy] [--num 20 --lr-crop 64]
"""
import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ARCHS = {"osediff": "S1 (VAE-D8 + UNet)", "s4": "S4 (VAE-D4 + UNet)", "tvt": "TVT (VAE-D4 + CE-UNet)"}


def _crops(lr_dir: Path, hr_dir: Path, num: int, lr_crop: int, scale: int, out: Path) -> tuple[Path, Path]:
    """Center crops of the first ``num`` pairs: LR lr_crop^2, HR (lr_crop*scale)^2, as PNG folders."""
    from PIL import Image

    from tvt.io import list_images

    (out / "LR").mkdir(parents=True, exist_ok=True)
    (out / "HR").mkdir(parents=True, exist_ok=True)
    for lr_path in list_images(lr_dir)[:num]:  # paired sets keep one name in LR/ and HR/
        key = lr_path.stem
        lr, hr = Image.open(lr_path).convert("RGB"), Image.open(hr_dir / lr_path.name).convert("RGB")
        t, l = (lr.height - lr_crop) // 2, (lr.width - lr_crop) // 2
        lr.crop((l, t, l + lr_crop, t + lr_crop)).save(out / "LR" / f"{key}.png")
        s = scale
        hr.crop((l * s, t * s, (l + lr_crop) * s, (t + lr_crop) * s)).save(out / "HR" / f"{key}.png")
    return out / "LR", out / "HR"


def _paper_complexity() -> dict:
    """Whole-model complexity at 512x512 with SD 2.1's shapes (VAE + UNet + text encoder), as Table 7 counts it."""
    from tvt.flops import paper_models_complexity

    c = paper_models_complexity(512)
    return {"osediff": c["osediff_total"], "s4": c["vae_d4"] + c["unet_sd21_128"] + c["text_encoder"], "tvt": c["tvt_total"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300, help="ISR training steps of each architecture")
    ap.add_argument("--vaes", type=Path, default=None, help="toy VAEs folder (default: data/samples/toy)")
    ap.add_argument("--num", type=int, default=20, help="held-out RealSR pairs to evaluate")
    ap.add_argument("--lr-crop", type=int, default=64, help="LR center crop (outputs are 4x)")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "benchmark_ce_unet_toy")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ce_unet_toy.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from tvt.data.catalog import paired_dirs
    from tvt.metrics.evaluate import evaluate_folders
    from tvt.pipeline import TVTPipeline, super_resolve_folder
    from tvt.train.isr import ISRStage
    from tvt_scripts.toy import SHIPPED_VAES, TINY, ToySteps, loss_curve, run_stage, train_toy

    t0 = time.time()
    vaes = args.vaes or SHIPPED_VAES
    toy = train_toy(args.work / "toy", ToySteps(), isr=False, vaes=vaes)  # the tiny SD folder with the toy teacher
    sd, vae_d4 = toy.sd, toy.vae_d4
    lr_dir, hr_dir, scale = paired_dirs("RealSR")  # held out: the toy trains on DRealSR
    lr_eval, hr_eval = _crops(lr_dir, hr_dir, args.num, args.lr_crop, scale, args.work / "eval")

    rows, curves, cost = {}, {}, {}
    for arch in ARCHS:
        t = time.time()
        run = run_stage(ISRStage, TINY / "isr.yaml", [
            f"sd_model={sd}", f"vae_d4={vae_d4}", f"architecture={arch}", f"train.max_steps={args.steps}",
            f"train.output_dir={args.work / 'runs'}", f"train.run_name=tiny_isr_{arch}", f"train.ckpt_every={args.steps}",
            "train.tracker=none"])
        cost[arch] = time.time() - t
        curves[arch] = loss_curve(run, "l2")
        pipe = TVTPipeline.from_pretrained(run / "export", process_size=0)
        sr = super_resolve_folder(pipe, lr_eval, args.work / "sr" / arch, upscale=scale, overwrite=True, progress=False)
        rows[arch] = evaluate_folders(sr.folder, hr_eval, ["psnr", "ssim"], progress=False)["summary"]
        rows[arch]["s_per_image"] = sr.seconds / max(len(sr.written), 1)
        print(f"{arch}: {rows[arch]} ({cost[arch]:.0f} s training)", flush=True)
    bic = super_resolve_folder(TVTPipeline.from_pretrained("bicubic"), lr_eval, args.work / "sr" / "bicubic",
                               upscale=scale, overwrite=True, progress=False)
    rows["bicubic"] = evaluate_folders(bic.folder, hr_eval, ["psnr", "ssim"], progress=False)["summary"]
    full = _paper_complexity()

    def late_l2(arch: str) -> float:  # every architecture sees the same batches: comparable across rows
        c = curves[arch][len(curves[arch]) // 2:]
        return sum(v for _, v in c) / len(c)

    lines = [
        "# Table 7 at toy scale: S1 vs S4 vs TVT (CE-UNet)",
        "",
        f"Command: `python benchmarks/ce_unet_toy.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
        "",
        (f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
         f"no GPU, {args.threads} thread(s). Wall time {time.time() - t0:.0f} s."),
        "",
        (f"Setup: configs/tiny/isr.yaml (L2 + LPIPS with a random VGG + VSD, t = 1, lr 1e-4, batch 2 of 64 px DRealSR HR "
         f"crops, tiny degradation), {args.steps} steps per architecture from seed 0, on the toy VAEs of "
         f"{'data/samples/toy' if vaes == SHIPPED_VAES else vaes} (VAE-D8 teacher, VAE-D4). The tiny SD UNet and text encoder are random; the "
         f"prompt is fixed. Evaluation: {len(list(lr_eval.iterdir()))} held-out RealSR pairs, {args.lr_crop}px LR "
         f"center crops, x{scale}; PSNR/SSIM on Y (pyiqa's protocol), process_size 0."),
        "",
        "| setting | PSNR-Y (dB) | SSIM-Y | training L2, mean of the 2nd half (same batches) | train s | s/image (CPU) "
        "| full size at 512^2: TMACs conv+linear (paper's FLOPs) + attention matmuls |",
        "|---|---|---|---|---|---|---|",
    ]
    paper = {"osediff": "2.27 T", "s4": "2.59 T", "tvt": "1.97 T"}
    for arch, name in ARCHS.items():
        r, m = rows[arch], full[arch]
        lines.append(f"| {name} | {r['psnr']:.2f} | {r['ssim']:.4f} | {late_l2(arch):.4f} "
                     f"| {cost[arch]:.0f} | {r['s_per_image']:.2f} | {m.flops / 1e12:.2f} (paper {paper[arch]}) + "
                     f"{m.attention_flops / 1e12:.2f} |")
    lines.append(f"| bicubic | {rows['bicubic']['psnr']:.2f} | {rows['bicubic']['ssim']:.4f} | – | – | – | – |")
    lines.append("")
    old = args.out.read_text() if args.out.exists() else ""
    if "## Reading" in old:
        lines += [old[old.index("## Reading"):].rstrip(), ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    (args.work / "results.json").write_text(json.dumps({"rows": rows, "curves": curves, "cost": cost,
                                                         "full_macs": {a: vars(c) for a, c in full.items()}}, indent=2))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
