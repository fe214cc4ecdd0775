"""Toy-scale evidence for Transfer VAE Training (Table 6 and part of Table 1 in miniature), on CPU.

Trains a tiny VAE-D8 teacher (SD's D8 layout, tiny widths: configs/tiny/vae_teacher.yaml) on DRealSR HR crops, then
TVT stage 1 + stage 2 (configs/tiny/vae_stage{1,2}.yaml), T1 (a D4 from scratch) and T2 (a D4 with an L2 latent-alignment
loss), all with LDM's training conventions, and evaluates on held-out RealSR HR crops (RealSR is never trained on):
reconstruction PSNR-Y of D8 vs each D4, alignment of each D4 latent to the D8 latent of up2(x) (relative L2, cosine,
linear R^2), cross-decoding (the D4 decoder on D8 latents; the D8 decoder on D4 latents), an untrained D4 as the floor
and D8 latents of other images as the no-alignment reference. Diagnostics: latent inversion through the frozen
stage-1 decoder (do other latents decode as well as z8?) and the D8 latent's channel correlation.

The teacher is trained with another seed than the D4 runs (configs/tiny/vae_teacher.yaml). Runs go to a pool of
``--jobs`` processes (one thread each on 2 cores): teacher -> stage 1 -> stage 2 in one lane, T1 -> T2 in the other.

    python benchmarks/vae_transfer_toy.py [--teacher-steps 2500] [--steps 1500] [--scratch-steps 2000] [--crop 64] [--num 20]
    python benchmarks/vae_transfer_toy.py stage2_seeds=[0,1,2]      # list keys: key=[a,b] or --key a --key b
"""
import json
import os
import shutil
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from _machine import machine

from tvt_scripts._cli import command

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny"
READING = "## Reading"


def _train(yaml: str, overrides: list, log_file: str, threads: int) -> tuple[str, float, float]:
    """One training run in a worker process (the Trainer + config loader, as scripts/toy.py's run_stage).

    Returns its run folder, wall seconds and CPU seconds (the CPU time does not grow when other jobs share the cores)."""
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    import logging

    import torch

    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from tvt.config import load_config
    from tvt.train.trainer import Trainer
    from tvt.train.vae_transfer import VAETransferConfig, VAETransferStage

    t0, c0 = time.time(), time.process_time()
    run = Trainer(VAETransferStage(load_config(VAETransferConfig, yaml, overrides))).fit()
    wall, cpu = time.time() - t0, time.process_time() - c0
    print(f"wall {wall:.0f} s, CPU {cpu:.0f} s", flush=True)
    return str(run), wall, cpu


def _curve(run: Path, key: str = "l1", window: int = 100) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    out = []
    for i in range(0, len(rows), window):
        seg = [r[key] for r in rows[i:i + window] if key in r]
        if seg:
            out.append((rows[min(i + window, len(rows)) - 1]["step"], sum(seg) / len(seg)))
    return out


def _plateau(curve) -> str:
    """Mean L1 of the last window vs the window 1/4 of the run earlier: how much the loss still moves."""
    last, earlier = curve[-1][1], curve[max(0, len(curve) - 1 - max(1, len(curve) // 4))][1]
    return f"{last:.4f} (was {earlier:.4f} a quarter of the run earlier, {100 * (earlier - last) / earlier:+.1f}%)"


def _inversion(decoder, z8, x, steps: int, inits: dict) -> dict:
    """Optimise a latent through a frozen decoder (Adam, L1 summed / B, as stage 2's loss) from several inits."""
    import torch

    from tvt.metrics.image import psnr_y

    def score(z):
        with torch.no_grad():
            rel = ((z - z8).flatten(1).norm(dim=1) / z8.flatten(1).norm(dim=1)).mean().item()
            return rel, psnr_y((decoder(z) + 1) / 2, (x + 1) / 2).mean().item()

    out = {}
    for name, z0 in inits.items():
        z = z0.clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=0.05)
        for _ in range(steps):
            loss = (decoder(z) - x).abs().sum() / len(x)
            opt.zero_grad()
            loss.backward()
            opt.step()
        out[name] = (score(z0), score(z.detach()))
    return out


@dataclass
class VAETransferToyConfig:
    teacher_steps: int = 2000  # tiny VAE-D8 teacher steps
    steps: int = 1500  # steps of TVT stage 1 and of stage 2 (each)
    scratch_steps: int = 1500  # steps of T1 and of T2 (encoder + decoder at once)
    crop: int = 64  # training crop (evaluation crops are twice this)
    batch: int = 4
    lpips_weight: float = 0.0  # LPIPS with a RANDOM VGG (no weights offline): it doubles the cost and is not perceptual
    stage2_seeds: list = field(default_factory=lambda: [0, 1])  # stage-2 runs, one per seed of the encoder's init
    t1_seeds: list = field(default_factory=lambda: [0, 1])  # T1 runs, one per seed (the teacher's is 1)
    num: int = 20  # RealSR HR images for evaluation
    inversion_steps: int = 200  # 0 skips the latent-inversion diagnostic
    jobs: int = 2  # training processes at once (threads each: cores / jobs)
    work: str = str(ROOT / "runs" / "vae_transfer_toy")
    out: str = str(ROOT / "benchmarks" / "results" / "vae_transfer_toy.md")


@command(VAETransferToyConfig)
def main(args: VAETransferToyConfig) -> int:
    from tvt.data.catalog import paired_dirs

    args.work, args.out = Path(args.work), Path(args.out)
    args.stage2_seeds, args.t1_seeds = [int(k) for k in args.stage2_seeds], [int(k) for k in args.t1_seeds]
    t0 = time.time()
    shutil.rmtree(args.work, ignore_errors=True)
    (args.work / "logs").mkdir(parents=True)
    sd = args.work / "tiny_sd"  # an SD-shaped folder whose vae/ is the trained teacher (all load_vae_d8 needs)
    threads = max(1, (os.cpu_count() or 2) // args.jobs)
    _, train_hr, _ = paired_dirs("DRealSR")  # trained on; RealSR is held out (the data root: TVT_DATA)
    _, test_hr, _ = paired_dirs("RealSR")
    common = [f"data.sources=[{train_hr}]", f"data.crop_size={args.crop}",
              f"train.output_dir={args.work / 'runs'}", "train.tracker=none", f"train.batch_size={args.batch}",
              f"loss.lpips_weight={args.lpips_weight}", "loss.lpips_backbone=random", "train.log_every=50",
              "train.ckpt_every=1000000", "train.keep_last=1"]
    d4 = ["vae_kwargs={block_out_channels: [16, 32, 32], norm_num_groups: 8, sample_size: 64}", "loss.disc_ndf=16"]
    s, ss = args.steps, args.scratch_steps
    # GAN from half-way (LDM: disc_start 50001 of a long run; the decoder first learns alone)
    jobs = {  # name: (yaml, overrides, dependencies)
        "teacher": (TINY / "vae_teacher.yaml", [f"train.max_steps={args.teacher_steps}"], ()),
        "stage1": (TINY / "vae_stage1.yaml", [f"sd_model={sd}", f"train.max_steps={s}", f"loss.disc_start={s // 2}"],
                   ("teacher",)),
        **{f"stage2_s{k}": (TINY / "vae_stage2.yaml", [f"sd_model={sd}", f"train.max_steps={s}", f"train.seed={k}",
                                                       f"train.run_name=tiny_vae_stage2_s{k}"], ("stage1",))
           for k in args.stage2_seeds},
        **{f"t1_s{k}": (TINY / "vae_stage1.yaml", ["mode=scratch", f"train.run_name=tiny_t1_s{k}", f"train.seed={k}",
                                                   f"train.max_steps={ss}", *d4, f"loss.disc_start={ss // 2}"], ())
           for k in args.t1_seeds},
        "t2": (TINY / "vae_stage1.yaml", ["mode=align", "train.run_name=tiny_t2", f"sd_model={sd}", f"train.max_steps={ss}",
                                          *d4, f"loss.disc_start={ss // 2}"], ("teacher",)),
    }
    # a job starts when a process is free, the first ready one in this order: the TVT chain first (it is the longest)
    jobs = {k: jobs[k] for k in sorted(jobs, key=lambda n: (n.startswith("t2"), n.startswith("t1"), n != "teacher", n))}
    runs: dict[str, Path] = {}
    cost: dict[str, tuple[float, float]] = {}  # name: (wall s, CPU s)
    pending, running = dict(jobs), {}
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool:
        while pending or running:
            for name in [n for n, (_, _, deps) in pending.items() if all(d in runs for d in deps)]:
                if len(running) >= args.jobs:
                    break
                yaml, ov, _ = pending.pop(name)
                if name.startswith("stage2"):
                    ov = ov + [f"decoder_from={runs['stage1'] / 'export'}"]
                fut = pool.submit(_train, str(yaml), common + ov, str(args.work / "logs" / f"{name}.log"), threads)
                running[fut] = name
                print(f"[{time.time() - t0:5.0f} s] started {name}", flush=True)
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                name = running.pop(fut)
                run, wall_s, cpu_s = fut.result()
                runs[name], cost[name] = Path(run), (wall_s, cpu_s)
                print(f"[{time.time() - t0:5.0f} s] finished {name}: {runs[name]}", flush=True)
                if name == "teacher":
                    (sd).mkdir(parents=True, exist_ok=True)
                    shutil.copytree(runs[name] / "export", sd / "vae")
    train_wall = time.time() - t0

    import torch
    import torch.nn.functional as F

    torch.set_num_threads(os.cpu_count() or 2)
    from tvt.models.vae import AutoencoderKLD4, load_vae_d4, load_vae_d8
    from tvt.metrics.vae import evaluate_vae, latent_alignment, load_eval_images

    images = load_eval_images(test_hr, args.crop * 2, args.num)  # held out: never trained on
    d8 = load_vae_d8(sd).eval()
    rows = {"VAE-D8 (teacher)": evaluate_vae(d8, images)}
    names = {**{f"stage2_s{k}": f"TVT-D4 (stage 1 + 2), stage-2 encoder init seed {k}" for k in args.stage2_seeds},
             **{f"t1_s{k}": f"T1 (no transfer), seed {k}" + (" = the teacher's seed" if k == 1 else "") for k in args.t1_seeds},
             "t2": "T2 (L2 alignment), seed 0"}
    for key, name in names.items():
        rows[name] = evaluate_vae(load_vae_d4(runs[key] / "export").eval(), images, d8)
    torch.manual_seed(0)  # the floor: the same tiny D4 architecture, untrained
    rows["D4 untrained (floor)"] = evaluate_vae(AutoencoderKLD4.from_config(load_vae_d4(runs["stage1"] / "export").config).eval(),
                                                images, d8)
    with torch.no_grad():  # the no-alignment reference: the D8 latent of ANOTHER image, same statistics
        x = images * 2 - 1
        z8 = d8.encode(F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False).clamp(-1, 1)).latent_dist.mode()
        al = latent_alignment(z8.roll(1, dims=0), z8)
        rows["D8 latent of another image (reference)"] = {"rel_l2": float(al["rel_l2"].mean()), "cosine": float(al["cosine"].mean())}
        ch = z8.permute(1, 0, 2, 3).flatten(1)
        corr = torch.corrcoef(ch)
        off_diag_corr = float(corr[~torch.eye(len(corr), dtype=torch.bool)].abs().mean())
        pc = torch.linalg.svdvals(ch - ch.mean(1, keepdim=True)) ** 2
        first_pc = float(pc[0] / pc.sum())

    inversion = {}
    if args.inversion_steps:
        dec4 = load_vae_d4(runs["stage1"] / "export").eval().requires_grad_(False)
        d8.requires_grad_(False)
        xi = images[:8] * 2 - 1
        with torch.no_grad():
            z8i = d8.encode(F.interpolate(xi, scale_factor=2, mode="bicubic", align_corners=False).clamp(-1, 1)).latent_dist.mode()
            z8o = d8.encode(xi).latent_dist.mode()
            z_tvt = load_vae_d4(runs[f"stage2_s{args.stage2_seeds[0]}"] / "export").eval().encode(xi).latent_dist.mode()
        g = torch.Generator().manual_seed(0)
        inversion["stage-1 D4 decoder"] = _inversion(lambda z: dec4.decode(z).sample, z8i, xi, args.inversion_steps, {
            "z8 (the D8 latent)": z8i, "zero": torch.zeros_like(z8i),
            f"TVT stage-2 encoder's latent (seed {args.stage2_seeds[0]})": z_tvt,
            "random, z8's scale": torch.randn(z8i.shape, generator=g) * z8i.std()})
        inversion["D8 decoder (its own latent)"] = _inversion(lambda z: d8.decode(z).sample, z8o, xi, args.inversion_steps, {
            "z8 (the D8 latent)": z8o, "zero": torch.zeros_like(z8o)})

    wall = time.time() - t0
    curves = {name: _curve(run) for name, run in runs.items()}

    def cell(r, k, digits=3):
        return f"{r[k]:.{digits}f}" if k in r else "–"

    cmd = (f"python benchmarks/vae_transfer_toy.py --teacher-steps {args.teacher_steps} --steps {args.steps} "
           f"--scratch-steps {args.scratch_steps} --crop {args.crop} --batch {args.batch} --lpips-weight {args.lpips_weight} "
           f"--num {args.num} --inversion-steps {args.inversion_steps} --jobs {args.jobs}")
    lines = [
        "# Transfer VAE Training at toy scale",
        "",
        f"Command: `{cmd}`",
        "",
        (f"Machine: {machine()} (cores shared with other jobs), "
         f"torch {torch.__version__}. Wall time {wall:.0f} s ({train_wall:.0f} s training in {args.jobs} processes "
         f"x {threads} thread(s), the rest evaluation and diagnostics). Training CPU time "
         f"{sum(c for _, c in cost.values()):.0f} s; per run (wall / CPU s): "
         + ", ".join(f"{n} {w:.0f}/{c:.0f}" for n, (w, c) in cost.items()) + "."),
        "",
        (f"Setup: tiny VAE-D8 teacher (SD's D8 layout, 16/32/32/32 channels, seed 1) trained {args.teacher_steps} steps; "
         f"TVT stage 1 ({args.steps} steps, GAN from step {s // 2}) and stage 2 ({args.steps} steps, no GAN) on the tiny D4 "
         f"(16/32/32, seed 0); T1 and T2 {args.scratch_steps} steps each (GAN from step {ss // 2}). Batch {args.batch} of "
         f"{args.crop}px DRealSR HR crops; LDM conventions throughout (summed L1 + KL 1e-6, posterior samples, Adam(0.5, 0.9), "
         f"no clipping); lr 2e-3 (toy). LPIPS weight {args.lpips_weight} (no VGG weights offline). Evaluation on "
         f"{len(images)} held-out RealSR HR center crops of {2 * args.crop}px; PSNR on Y (BT.601)."),
        "",
        ("Columns: alignment = this D4's latent of x vs the D8 latent of bicubic up2(x) (relative L2: lower is closer; "
         "cosine: higher is closer; lin. R^2: share of the D8 latent a per-pixel affine map of the D4 latent explains, i.e. "
         "the same information in possibly other coordinates). `D4 dec(z8)`: this D4's decoder on the D8 latent of up2(x) "
         "(what it must do with the SD UNet's output). `D8 dec(z4)`: the D8 decoder on this D4's latent of x, then 2x "
         "bicubic down (can the UNet read it as an SD latent); its ceiling is the D8 row (the D8's own up2 round trip)."),
        "",
        "| VAE | PSNR-Y (dB) | rel. L2 to D8 latent | cosine | lin. R^2 | D4 dec(z8) (dB) | D8 dec(z4) (dB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(f"| {name} | {cell(r, 'psnr_y', 2)} | {cell(r, 'rel_l2')} | {cell(r, 'cosine')} | {cell(r, 'lin_r2')} | "
                     f"{cell(r, 'psnr_y_d4dec_z8', 2)} | {cell(r, 'psnr_y_d8dec_z4', 2) if 'psnr_y_d8dec_z4' in r else cell(r, 'psnr_y_d8dec_z8', 2)} |")
    lines += ["", "Training L1 (per pixel, [-1, 1] images), mean of the last 100 steps: " + "; ".join(
        f"{n} {_plateau(c)}" for n, c in curves.items()) + ".", ""]
    lines += [f"D8 latent (held-out crops): mean |correlation| between its 4 channels {off_diag_corr:.2f}; the first "
              f"principal component carries {100 * first_pc:.0f}% of its variance.", ""]
    if inversion:
        lines += [f"Latent inversion ({args.inversion_steps} Adam steps, lr 0.05, on the summed L1 of 8 held-out crops): "
                  "start -> end of (relative L2 to z8, PSNR-Y dB).", "",
                  "| decoder | init | rel. L2 to z8 | PSNR-Y (dB) |", "|---|---|---|---|"]
        for dec, res in inversion.items():
            for init, ((r0, p0), (r1, p1)) in res.items():
                lines.append(f"| {dec} | {init} | {r0:.3f} -> {r1:.3f} | {p0:.2f} -> {p1:.2f} |")
        lines.append("")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    old = args.out.read_text() if args.out.is_file() else ""
    if READING in old:  # the hand-written reading of the numbers is kept across reruns (check it still holds)
        lines += [old[old.index(READING):].rstrip(), ""]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    (args.work / "results.json").write_text(json.dumps({"rows": rows, "curves": curves, "inversion": inversion, "cost": cost,
                                                         "runs": {k: str(v) for k, v in runs.items()}, "wall_s": wall}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
