"""`make demo`: the whole method end to end on the bundled samples, ending in demo_output/report.{md,html}.

Without weights (a fresh clone): the toy recipe (tvt.demo.toy) trains the one-step CE-UNet on the DRealSR samples,
starting from the shipped toy VAEs (data/samples/toy: a tiny VAE-D8 teacher and the VAE-D4 of Transfer VAE Training;
vaes=null trains them too), then super-resolves the held-out RealSR samples and scores them against bicubic. With
model= (an export, latest:<run_name> or the official release) it runs that model.

    python scripts/demo.py                        # toy: about 5 minutes on a 2-core CPU
    python scripts/demo.py model=latest:isr output_dir=demo_real
"""
import tvt_scripts  # noqa: F401  first: a Ctrl-C during the imports below is one line (tvt_scripts/__init__.py)
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from tvt.demo.report import demo_report, vae_reconstructions
from tvt.demo.text import text_legibility, toy_vaes
from tvt.demo.toy import ToySteps, train_toy
from tvt.inference import TVTPipeline, super_resolve_folder
from tvt.metrics.evaluate import evaluate_folders, write_results
from tvt.train.runs import resolve_run_path
from tvt_scripts._cli import command

EXPECTED_MINUTES = 5  # the toy run on a 2-core CPU: 4.5 min measured (README)


@dataclass
class DemoConfig:
    output_dir: str = "demo_output"
    model: Optional[str] = None  # a TVT export, latest:<run_name> or the official release: run it instead of the toy
    images: str = "${samples:RealSR}"  # held-out test pairs (HR/, LR/), never trained on
    metrics: list = field(default_factory=lambda: ["psnr", "ssim", "fsim"])
    crops: list = field(default_factory=lambda: ["Canon_004_LR4:256,160,128,128", "Nikon_010_LR4:192,192,128,128"])
    # TVT is run once per colour fix: adain is the official default; wavelet takes the low frequencies (colour,
    # shading) from the upscaled input, which hides the toy VAEs' colour shifts
    color_fixes: list = field(default_factory=lambda: ["adain", "wavelet"])
    toy: ToySteps = field(default_factory=ToySteps)
    # the toy VAEs to start from (trained by scripts/toy.py, see its README there); null: train them live too
    vaes: Optional[str] = "${samples:toy}"
    # the report's first section: ACC/NED of HR, bicubic, the VAE reconstructions and TVT on rendered text lines
    text_samples: Optional[str] = "${samples:text}"  # null: no text section


@command(DemoConfig)
def main(cfg: DemoConfig) -> int:
    start, out = time.time(), Path(cfg.output_dir).resolve()
    print(f"[demo] {'model ' + cfg.model if cfg.model else f'toy run: about {EXPECTED_MINUTES} minutes on a 2-core CPU'}"
          f"; report in {out}", flush=True)
    shutil.rmtree(out, ignore_errors=True)
    work, images = out / "work", Path(cfg.images)
    toy = None if cfg.model else train_toy(work, cfg.toy, vaes=Path(cfg.vaes) if cfg.vaes else None)
    model = resolve_run_path(cfg.model, "runs") if cfg.model else str(toy.model)
    summaries, sr_dirs, pipes = {}, {}, {}
    runs = [("Bicubic", "bicubic", None)] + [(tvt_label(fix, cfg.color_fixes), model, fix) for fix in cfg.color_fixes]
    for label, name, fix in runs:
        if name not in pipes:  # one load per model; the colour fix is a call argument
            pipes[name] = TVTPipeline.from_pretrained(name)
        pipe = pipes[name]
        folder = f"tvt_{fix}" if fix else "bicubic"
        kwargs = {"color_fix": fix} if fix else {}
        sr_dirs[label] = super_resolve_folder(pipe, images / "LR", work / "sr" / folder, progress=False, **kwargs).folder
        result = evaluate_folders(sr_dirs[label], images / "HR", cfg.metrics, progress=False)
        write_results(result, out / "eval" / folder)
        summaries[label] = result["summary"]
    vae_rows = vae_reconstructions(toy, images / "HR", work / "vae") if toy else {}
    text = text_legibility(Path(cfg.text_samples), work / "text", model, toy_vaes(toy)) if cfg.text_samples else None
    md, html = demo_report(out, summaries, vae_rows, toy, sr_dirs, images, cfg.crops, time.time() - start, text)
    print(f"[demo] report: {md} and {html} ({time.time() - start:.0f} s)")
    return 0


def tvt_label(fix: str, fixes: list) -> str:
    """The report's row name of TVT with colour fix ``fix``: plain "TVT" when it is the only one."""
    return "TVT" if len(fixes) == 1 else f"TVT, {fix} colour fix"


if __name__ == "__main__":
    sys.exit(main())
