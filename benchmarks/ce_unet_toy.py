"""Tables 7 and 5 in miniature, on CPU: every architecture of tvt.models.architectures trained the same way.

    S1   VAE-D8 + SD UNet          osediff       S4   VAE-D4 + SD UNet        s4
    S2   VAE-D8-SC + SD UNet       s2            S5   VAE-D4 + Prun-UNet      s5
    S3   VAE-D8C8 + SD UNet (8ch)  s3            TVT  VAE-D4 + CE-UNet        tvt       V1 / V2: TVT with those VAEs

Each one-step model is trained by configs/tiny/isr.yaml (L2 + LPIPS + VSD, t = 1, Real-ESRGAN degradation on DRealSR
HR crops) for the same number of steps from the same seed, on the toy VAEs: the tiny VAE-D8 teacher and the TVT
VAE-D4 of data/samples/toy (or --vaes). S3's VAE-D8C8 and V1/V2's VAEs are trained here with the recipe of the
shipped VAE-D4 (stage 1 then stage 2 on the teacher, batch 4 of 64 px DRealSR HR crops, lr 2e-3, GAN from half of
stage 1, no LPIPS; data/samples/toy/README.md), --vae-steps each. Evaluation on held-out RealSR pairs (never trained
on; LR center crops, x4): PSNR-Y and SSIM-Y (pyiqa protocol) against bicubic, and each model's FLOPs at 512x512 with
SD 2.1's shapes (tvt.flops, the Tables 5/7 column). The UNet and text encoder are tiny and random: quality numbers
check which layout learns faster from the same start, not the paper's values.

Each row is stored in <work>/rows/<arch>.json, and the results file is written from every row there (and of
--rows-from folders), so rows can be run apart (e.g. two processes) with identical settings.

    python benchmarks/ce_unet_toy.py --steps 300 [archs=[osediff,s2,s3,s4,s5,tvt]] [--vaes data/samples/toy]
"""
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _machine import machine  # noqa: E402

from tvt.errors import ConfigError  # noqa: E402
from tvt_scripts._cli import command as cli_command  # noqa: E402

ORDER = ("osediff", "s2", "s3", "s4", "s5", "tvt", "v1", "v2")
TOY_VAE_WIDTHS = {"d8c8": [16, 32, 32, 32], "v1": [16, 32, 64], "v2": [16, 32, 64]}  # the teacher's / the D4's widths


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


def _toy_vae(variant: str, sd: Path, work: Path, steps: tuple[int, int]) -> Path:
    """A toy VAE of ``variant`` by the shipped VAE-D4's recipe: stage 1 on the teacher (sd/vae), then stage 2."""
    from tvt.data.catalog import paired_dirs
    from tvt.demo.toy import TINY, run_stage
    from tvt.train.vae_transfer import VAETransferStage

    _, train_hr, _ = paired_dirs("DRealSR")
    s1, s2 = steps
    common = [f"sd_model={sd}", f"variant={variant}", f"vae_kwargs.block_out_channels={TOY_VAE_WIDTHS[variant]}",
              f"data.sources=[{train_hr}]", "loss.lpips_weight=0.0", "loss.disc_ndf=16", "train.tracker=none",
              f"train.output_dir={work / 'runs'}", "train.log_every=50", "train.keep_last=1"]
    stage1 = run_stage(VAETransferStage, TINY / "vae_stage1.yaml", common + [
        f"train.run_name=toy_{variant}_stage1", f"train.max_steps={s1}", f"loss.disc_start={s1 // 2}",
        f"train.ckpt_every={s1}"])
    stage2 = run_stage(VAETransferStage, TINY / "vae_stage2.yaml", common + [
        f"train.run_name=toy_{variant}_stage2", f"train.max_steps={s2}", f"decoder_from={stage1 / 'export'}",
        f"train.ckpt_every={s2}"])
    return stage2 / "export"


def _rows(folders: list[Path]) -> dict:
    rows = {}
    for folder in folders:
        for f in sorted((folder / "rows").glob("*.json")):
            rows[f.stem] = json.loads(f.read_text())
    return rows


def _write(args, rows: dict, wall: float) -> list[str]:
    from tvt.models.architectures import ARCHITECTURES

    commands = sorted({r["command"] for r in rows.values() if "command" in r})
    tag = {c: "abcdefgh"[i] for i, c in enumerate(commands)}  # which invocation ran a row
    lines = [
        "# Tables 7 and 5 at toy scale: S1-S5, TVT (CE-UNet), V1/V2",
        "",
        "Rows run by: " + "; ".join(f"({tag[c]}) `{c}`" for c in commands) + " (the same settings; train s and s/image "
        "depend on the machine's load at the time)",
        "",
        (f"Machine: {machine()} (cores shared with other jobs), torch {torch.__version__}, 1 thread per training. "
         f"Wall time of the last invocation {wall:.0f} s."),
        "",
        (f"Setup: configs/tiny/isr.yaml (L2 + LPIPS with a random VGG + VSD, t = 1, lr 1e-4, batch 2 of 64 px DRealSR HR "
         f"crops, tiny degradation), the same steps per architecture from seed 0, on the toy VAEs of data/samples/toy "
         f"(VAE-D8 teacher: S1, and S2's skip-connected copy of it; VAE-D4: S4, S5, TVT); S3's VAE-D8C8 and V1/V2's VAEs "
         f"trained here on that teacher by the shipped VAE-D4's recipe (stage 1 + stage 2 steps in the table). The tiny "
         f"SD UNet and text encoder are random; the prompt is fixed. Evaluation: held-out RealSR pairs, LR center crops, "
         f"x4; PSNR/SSIM on Y (pyiqa's protocol), process_size 0."),
        "",
        "| setting | PSNR-Y (dB) | SSIM-Y | training L2, mean of the 2nd half (same batches) | ISR steps | toy VAE steps "
        "(stage 1 + 2) | train s | s/image (CPU) | full size at 512^2: TFLOPs, ours (paper) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for arch in [a for a in ORDER if a in rows]:
        r = rows[arch]
        lines.append(f"| {ARCHITECTURES[arch].row} ({tag[r['command']]}) | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['late_l2']:.4f} | {r['steps']} | "
                     f"{r.get('vae_steps', 'shipped')} | {r['train_s']:.0f} | {r['s_per_image']:.2f} | "
                     f"{r['flops'] / 1e12:.2f} ({ARCHITECTURES[arch].paper_flops / 1e12:.2f}) |")
    if "bicubic" in rows:
        lines.append(f"| bicubic | {rows['bicubic']['psnr']:.2f} | {rows['bicubic']['ssim']:.4f} | – | – | – | – | – | – |")
    lines.append("")
    old = args.out.read_text() if args.out.exists() else ""
    if "## Reading" in old:
        lines += [old[old.index("## Reading"):].rstrip(), ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    return lines


@dataclass
class CEUNetToyConfig:
    steps: int = 300  # ISR training steps of each architecture
    archs: list = field(default_factory=lambda: list(ORDER))  # rows to run ([]: only rewrite the results file)
    vaes: Optional[str] = None  # toy VAEs folder (default: data/samples/toy)
    # steps of stage 1 and stage 2 of the toy VAEs trained here (S3, V1, V2); the shipped VAE-D4: 1500 + 4000
    vae_steps: list = field(default_factory=lambda: [1500, 4000])
    num: int = 20  # held-out RealSR pairs to evaluate
    lr_crop: int = 64  # LR center crop (outputs are 4x)
    work: str = str(ROOT / "runs" / "benchmark_ce_unet_toy")
    rows_from: list = field(default_factory=list)  # other work folders whose rows to report too
    threads: int = 1
    out: str = str(ROOT / "benchmarks" / "results" / "ce_unet_toy.md")


@cli_command(CEUNetToyConfig)
def main(args: CEUNetToyConfig) -> int:
    if not set(args.archs) <= set(ORDER) or len(args.vae_steps) != 2:
        raise ConfigError(f"archs must be among {', '.join(ORDER)} and vae_steps two numbers (stage 1, stage 2)")
    args.work, args.out, args.rows_from = Path(args.work), Path(args.out), [Path(p) for p in args.rows_from]
    args.vaes = Path(args.vaes) if args.vaes else None
    args.vae_steps = [int(n) for n in args.vae_steps]
    torch.set_num_threads(args.threads)

    from tvt.data.catalog import paired_dirs
    from tvt.demo.toy import SHIPPED_VAES, TINY, ToySteps, loss_curve, run_stage, train_toy
    from tvt.flops import architecture_complexity, tagger_image_encoder_complexity, text_encoder_complexity, whole_model_flops
    from tvt.inference import TVTPipeline, super_resolve_folder
    from tvt.metrics.evaluate import evaluate_folders
    from tvt.models.architectures import ARCHITECTURES
    from tvt.train.isr import ISRStage

    t0 = time.time()
    command = "python benchmarks/ce_unet_toy.py " + " ".join(sys.argv[1:])
    toy = train_toy(args.work / "toy", ToySteps(), isr=False, vaes=args.vaes or SHIPPED_VAES)  # tiny SD + toy teacher
    sd = toy.sd
    lr_dir, hr_dir, scale = paired_dirs("RealSR")  # held out: the toy trains on DRealSR
    lr_eval, hr_eval = _crops(lr_dir, hr_dir, args.num, args.lr_crop, scale, args.work / "eval")
    (args.work / "rows").mkdir(parents=True, exist_ok=True)
    with torch.device("meta"):
        from transformers import CLIPTextConfig, CLIPTextModel

        from tvt.models.sd21 import SD21_TEXT_CONFIG
        text = text_encoder_complexity(CLIPTextModel(CLIPTextConfig(**SD21_TEXT_CONFIG)))
    tagger = tagger_image_encoder_complexity()

    for arch in args.archs:
        spec = ARCHITECTURES[arch]
        variant = spec.vae_variant if spec.vae == "trained" and spec.vae_variant != "d4" else None
        t = time.time()
        vae = _toy_vae(variant, sd, args.work, tuple(args.vae_steps)) if variant else toy.vae_d4
        vae_s = time.time() - t
        t = time.time()
        run = run_stage(ISRStage, TINY / "isr.yaml", [
            f"sd_model={sd}", f"vae_d4={vae}", f"architecture={arch}", f"train.max_steps={args.steps}",
            f"train.output_dir={args.work / 'runs'}", f"train.run_name=tiny_isr_{arch}", f"train.ckpt_every={args.steps}",
            "train.tracker=none"])
        train_s = time.time() - t
        curve = loss_curve(run, "l2")[len(loss_curve(run, "l2")) // 2:]  # every architecture sees the same batches
        pipe = TVTPipeline.from_pretrained(run / "export", process_size=0)
        sr = super_resolve_folder(pipe, lr_eval, args.work / "sr" / arch, upscale=scale, overwrite=True, progress=False)
        row = evaluate_folders(sr.folder, hr_eval, ["psnr", "ssim"], progress=False)["summary"]
        row.update(s_per_image=sr.seconds / max(len(sr.written), 1), train_s=train_s, steps=args.steps, command=command,
                   late_l2=sum(v for _, v in curve) / len(curve), num=len(sr.written),
                   flops=whole_model_flops(architecture_complexity(arch), text, tagger)["paper_totals"])
        if variant:
            row.update(vae_steps=f"{args.vae_steps[0]} + {args.vae_steps[1]}", vae_s=vae_s)
        (args.work / "rows" / f"{arch}.json").write_text(json.dumps(row, indent=2))
        print(f"{arch}: {row}", flush=True)
    if args.archs:
        bic = super_resolve_folder(TVTPipeline.from_pretrained("bicubic"), lr_eval, args.work / "sr" / "bicubic",
                                   upscale=scale, overwrite=True, progress=False)
        (args.work / "rows" / "bicubic.json").write_text(json.dumps(
            evaluate_folders(bic.folder, hr_eval, ["psnr", "ssim"], progress=False)["summary"]))
    lines = _write(args, _rows([args.work, *args.rows_from]), time.time() - t0)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
