"""`make demo`: the whole method end to end on the bundled images, ending in demo_output/report.{md,html}.

Real weights present -> the real TVT model on RealSR. Otherwise the toy run: a tiny VAE-D8 teacher briefly
trained on DRealSR HR crops, Transfer VAE Training stage 1 and 2, one-step ISR training with online
Real-ESRGAN degradations of DRealSR HR, inference on RealSR LR (held out), evaluation against bicubic.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from .config import load_config

TOY_NOTE = ("**Toy run.** These models are tiny and randomly initialised, trained for a few dozen steps on CPU "
            "(with a random LPIPS backbone): this checks that every stage of the method runs end to end. It is a "
            "pipeline check, not the paper's quality; the numbers below are not comparable to Table 2.")


@dataclass
class ToyConfig:
    crop_size: int = 64
    teacher_steps: int = 150
    stage1_steps: int = 120
    stage2_steps: int = 120
    isr_steps: int = 40
    num_eval_images: int = 30  # tiny-model inference costs ~2 s per 512px output on CPU


@dataclass
class DemoConfig:
    sd_model: Optional[str] = None
    model: Optional[str] = None
    output_dir: str = "demo_output"
    realsr: str = "../shared/benchmarks/RealSR"
    drealsr: str = "../shared/benchmarks/DRealSR"
    num_eval_images: int = 100
    metrics: list = field(default_factory=lambda: ["psnr", "ssim", "fsim"])
    crop_images: list = field(default_factory=lambda: ["Canon_004_LR4", "Nikon_010_LR4"])
    toy: ToyConfig = field(default_factory=ToyConfig)


def _stage_run(stage_cls, overrides: list[str], yaml: str | None = None) -> Path:
    from .train.core import Trainer

    return Trainer(stage_cls(load_config(stage_cls.Config, yaml, overrides))).fit()


def _losses(run: Path, keys: list[str]) -> dict[str, list[tuple[int, float]]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {k: [(r["step"], r[k]) for r in rows if k in r] for k in keys}


def train_toy(cfg: DemoConfig, work: Path) -> dict:
    """Teacher -> stage 1 -> stage 2 -> ISR on tiny models; returns paths and loss curves."""
    from .testing import make_tiny_sd
    from .train.isr import ISRStage
    from .train.vae_transfer import VAETransferStage

    root = Path(__file__).resolve().parents[1] / "configs" / "tiny"
    hr_train = str(Path(cfg.drealsr) / "HR")  # training data: DRealSR only, RealSR held out
    runs = work / "runs"
    common = [f"data.sources=[{hr_train}]", f"data.crop_size={cfg.toy.crop_size}", f"train.output_dir={runs}"]
    sd = make_tiny_sd(work / "tiny_sd")
    teacher = _stage_run(VAETransferStage, common + [f"train.max_steps={cfg.toy.teacher_steps}"], str(root / "vae_teacher.yaml"))
    shutil.rmtree(sd / "vae")
    shutil.copytree(teacher / "export", sd / "vae")  # the trained tiny D8 becomes the SD folder's VAE
    s1 = _stage_run(VAETransferStage, common + [f"sd_model={sd}", f"train.max_steps={cfg.toy.stage1_steps}"],
                    str(root / "vae_stage1.yaml"))
    s2 = _stage_run(VAETransferStage, common + [f"sd_model={sd}", f"decoder_from={s1 / 'export'}",
                                                f"train.max_steps={cfg.toy.stage2_steps}"], str(root / "vae_stage2.yaml"))
    isr = _stage_run(ISRStage, common + [f"sd_model={sd}", f"vae_d4={s2 / 'export'}", f"train.max_steps={cfg.toy.isr_steps}"],
                     str(root / "isr.yaml"))
    curves = {"VAE-D8 teacher (toy)": _losses(teacher, ["l1"]), "Stage 1: D4 decoder": _losses(s1, ["l1", "g_loss"]),
              "Stage 2: D4 encoder": _losses(s2, ["l1"]), "One-step ISR": _losses(isr, ["l2", "lpips", "vsd"])}
    return {"sd": sd, "model": isr / "export", "curves": curves}


@torch.no_grad()
def d8_reconstructions(sd_model: str | Path, hr_files: list[Path], out_dir: Path) -> Path:
    """HR images through SD's VAE-D8 (encode + decode): what an 8x latent can keep of fine structure."""
    from .io import pil_to_tensor, read_image, save_image
    from .models.vae import load_vae_d8

    vae = load_vae_d8(sd_model).eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    for f in hr_files:
        x = pil_to_tensor(read_image(f))[None] * 2 - 1
        y = vae.decode(vae.encode(x).latent_dist.mode()).sample
        save_image(((y[0] + 1) / 2).clamp(0, 1), out_dir / f"{f.stem}.png")
    return out_dir


def _subset(src: Path, names: list[str], dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for n in names:
        shutil.copy2(src / n, dst / n)
    return dst


def run(cfg: DemoConfig) -> Path:
    from .io import list_images
    from .metrics.evaluate import evaluate_folders, super_resolve_folder, write_results
    from .metrics.report import crop_figure, table_markdown
    from .report import plot_curves, write_report

    t0 = time.time()
    out = Path(cfg.output_dir)
    if out.exists():
        shutil.rmtree(out)
    work = out / "work"
    sd_model = os.environ.get("TVT_SD_MODEL") or cfg.sd_model
    model = os.environ.get("TVT_MODEL") or cfg.model
    real = bool(sd_model and model and Path(model).exists())
    realsr = Path(cfg.realsr)
    if not (realsr / "LR").is_dir():
        raise FileNotFoundError(f"RealSR test images not found at {realsr} (set realsr= in configs/demo.yaml)")
    num = cfg.num_eval_images if real else cfg.toy.num_eval_images
    names = [p.name for p in list_images(realsr / "LR")][:num]
    lr_dir, hr_dir = _subset(realsr / "LR", names, work / "LR"), _subset(realsr / "HR", names, work / "HR")
    curves = {}
    if real:
        print(f"[demo] real weights: SD {sd_model}, TVT {model}")
    else:
        print("[demo] no real weights configured: toy run with tiny random-initialised models on CPU")
        toy = train_toy(cfg, work)
        sd_model, model, curves = toy["sd"], toy["model"], toy["curves"]
    methods = {"Bicubic": "bicubic", "TVT": str(model)}
    summaries, dirs = {}, {}
    for label, m in methods.items():
        sr = super_resolve_folder(m, lr_dir, work / "sr" / label)
        res = evaluate_folders(sr, hr_dir, cfg.metrics)
        write_results(res, out / "eval" / label)
        summaries[label], dirs[label] = res["summary"], sr
    dirs = {"Bicubic": dirs["Bicubic"], "D8 reconstruction": d8_reconstructions(sd_model, [hr_dir / n for n in names
            if Path(n).stem in cfg.crop_images], work / "d8_rec"), "TVT": dirs["TVT"], "HR": hr_dir}
    figures = []
    crops = [(stem, (128, 128, 128, 128)) for stem in cfg.crop_images if (hr_dir / f"{stem}.png").exists()]
    if crops:
        crop_figure(crops, dirs, out / "crops.png")
        figures.append(("Crops: bicubic / VAE-D8 reconstruction / TVT / HR", "crops.png"))
    for title, series in curves.items():
        fname = "loss_" + "".join(c if c.isalnum() else "_" for c in title.lower()) + ".png"
        plot_curves(series, out / fname, title)
        figures.append((f"Loss curve: {title}", fname))
    sections = []
    if not real:
        sections.append(("What this is", TOY_NOTE))
    sections.append((f"RealSR x4 ({len(names)} images)", table_markdown(summaries, cfg.metrics) +
                     "\n\nPSNR/SSIM on the Y channel of YCbCr (BT.601), no border crop (pyiqa), as in the paper's Table 2."))
    sections.append(("Run", f"- models: SD `{sd_model}`, TVT `{model}`\n- wall time: {time.time() - t0:.0f} s on "
                     f"{torch.get_num_threads()} CPU threads\n- training data (toy): DRealSR HR crops; RealSR held out"))
    md, html = write_report(out, "TVT demo report", sections, figures)
    print(f"[demo] report: {md} and {html} ({time.time() - t0:.0f} s)")
    return md


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    config = "configs/demo.yaml"
    if "--config" in argv:
        i = argv.index("--config")
        config = argv[i + 1]
        del argv[i:i + 2]
    run(load_config(DemoConfig, config if Path(config).exists() else None, argv))
    return 0
