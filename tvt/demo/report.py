"""The demo's report (``make demo``, scripts/demo.py): one Markdown text, also rendered to HTML (the markdown
package), with loss-curve plots, a crop figure, and the toy VAEs' reconstruction scores."""
from __future__ import annotations

import html
from pathlib import Path

from ..io import atomic_path
from .toy import loss_curve


def smooth(values: list[float], weight: float = 0.9) -> list[float]:
    """Exponential moving average with tensorboard's bias correction: the trend of a noisy per-batch loss."""
    out, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight ** i))
    return out


def plot_curves(curves: dict[str, list[tuple[int, float]]], path: str | Path, title: str) -> Path:
    """One PNG with one line per series, faint per logged batch and solid smoothed (``smooth``); log-scale y when
    all values are positive."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    for name, pts in curves.items():
        if pts:
            steps, values = [s for s, _ in pts], [v for _, v in pts]
            line, = ax.plot(steps, values, lw=0.8, alpha=0.3)
            ax.plot(steps, smooth(values), label=f"{name} (smoothed)", lw=1.5, color=line.get_color())
    if all(v > 0 for pts in curves.values() for _, v in pts):
        ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def write_report(out_dir: str | Path, title: str, sections: list[tuple[str, str]],
                 figures: list[tuple[str, str]]) -> tuple[Path, Path]:
    """``report.md`` and the same content as ``report.html``. sections: (heading, markdown); figures: (caption,
    path relative to out_dir)."""
    import markdown

    out_dir = Path(out_dir)
    parts = [f"# {title}\n"] + [f"## {heading}\n\n{body}\n" for heading, body in sections]
    if figures:
        parts.append("## Figures\n")
        parts += [f"**{caption}**\n\n![{caption}]({rel})\n" for caption, rel in figures]
    text = "\n".join(parts)
    page = ("<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}img{max-width:100%}</style>"
            f"</head><body>{markdown.markdown(text, extensions=['tables'])}</body></html>")
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    with atomic_path(md_path) as tmp:
        tmp.write_text(text)
    with atomic_path(html_path) as tmp:
        tmp.write_text(page)
    return md_path, html_path


# ---------------------------------------------------------------------------------------------
# The demo's report
# ---------------------------------------------------------------------------------------------
def toy_note(toy) -> str:
    """The report's first lines: what is toy, where the VAEs come from, where real numbers come from."""
    vaes = (f"The VAEs (a tiny VAE-D8 teacher, then Transfer VAE Training stages 1 and 2) were trained beforehand with "
            f"this repository's toy recipe on the DRealSR test HR images and ship with it (data/samples/{toy.vaes_from.name}/:"
            f" its README has the command; their loss curves are below); this run trains the one-step CE-UNet on them."
            if toy.vaes_from else
            "This run trains every stage: the VAE-D8 teacher, Transfer VAE Training stages 1 and 2, the one-step CE-UNet.")
    return ("**This is a toy run.** Every model is tiny (VAE-D8 teacher 16/32/32/32 channels, VAE-D4 16/32/32, "
            "CE-UNet 16/32/32/32/32) and the SD UNet, text encoder and LPIPS backbone it starts from are random: no "
            f"weights are needed. {vaes} The one-step model trains on 12 DRealSR crops (data/samples) and is tested on "
            "RealSR samples no stage ever saw. It shows the machinery working (losses fall, the VAEs reconstruct, the "
            "one-step model tracks bicubic); it is not the paper's quality. Real runs: docs/reproduce.md (paper, Table "
            "2: TVT 25.81 dB PSNR-Y / 0.7596 SSIM-Y on the full RealSR set, bicubic 27.11 / 0.7555).")


CURVES = {"VAE-D8 teacher (toy)": ("teacher", ["l1"]), "Stage 1: VAE-D4 decoder": ("stage1", ["l1"]),
          "Stage 2: VAE-D4 encoder": ("stage2", ["l1"]), "One-step ISR": ("isr", ["l2", "lpips"])}


def vae_reconstructions(toy, hr_dir: Path, out_dir: Path) -> dict[str, dict[str, float]]:
    """PSNR-Y of the toy VAE-D8 teacher and the TVT VAE-D4 reconstructing the held-out HR images (encode, decode);
    the D8 reconstructions are written to ``out_dir/D8`` for the crop figure."""
    import torch

    from ..io import list_images, pil_to_tensor, read_image, save_image
    from ..metrics.image import psnr_y
    from ..models.vae import load_vae_d4, load_vae_d8

    vaes = {"VAE-D8 teacher (toy)": load_vae_d8(toy.sd), "VAE-D4, Transfer VAE Training (toy)": load_vae_d4(toy.vae_d4)}
    rows = {name: [] for name in vaes}
    with torch.inference_mode():
        for path in list_images(hr_dir):
            x = pil_to_tensor(read_image(path))[None]  # (1, 3, H, W) in [0, 1]
            for name, vae in vaes.items():
                rec = ((vae.eval().decode(vae.encode(x * 2 - 1).latent_dist.mode()).sample + 1) / 2).clamp(0, 1)
                rows[name].append(float(psnr_y(rec, x)))
                if "D8" in name:
                    save_image(rec[0], out_dir / "D8" / f"{path.stem}.png")
    return {name: {"psnr": sum(v) / len(v)} for name, v in rows.items()}


def demo_report(out: Path, summaries: dict, vae_rows: dict, toy, sr_dirs: dict, images: Path, crops: list[str],
                seconds: float, text: tuple[dict, dict] | None = None) -> tuple[Path, Path]:
    """``text``: (rows, image folders) of tvt.demo.text.text_legibility, the first section after the note."""
    import platform

    import torch

    from ..metrics.tables import crop_figure, table_markdown

    n = summaries["Bicubic"]["num_images"]
    from .text import TEXT_CROPS, text_section

    sections = [("What this is", toy_note(toy) if toy else "The model given to the demo, on the bundled RealSR samples.")]
    figures = []
    if text:
        sections.append(("Text legibility (rendered text lines, x4; read by PP-OCR)", text_section(text[0])))
        boxes = [(c.split(":")[0], tuple(int(v) for v in c.split(":")[1].split(","))) for c in TEXT_CROPS]
        boxes = [b for b in boxes if any(text[1]["HR"].glob(f"{b[0]}.*"))]
        if boxes:
            crop_figure(boxes, text[1], out / "text_crops.png", tile=192)
            figures.append((" / ".join(text[1]) + " (text lines, nearest-neighbour zoom)", "text_crops.png"))
    sections.append((f"RealSR samples, x4 ({n} images, never trained on)", table_markdown(summaries, list(summaries["Bicubic"]["protocol"]))
                     + "\n\nPSNR/SSIM on the Y channel of YCbCr (BT.601), no border crop (pyiqa): the paper's Table 2 protocol."
                     + ("\n\nColour fix (`color_fix`): AdaIN is the official default; wavelet takes the low frequencies "
                        "(colour, shading) from the upscaled input, which hides the toy VAEs' colour shifts."
                        if sum(k.startswith("TVT,") for k in summaries) > 1 else "")))
    if vae_rows:
        sections.append(("VAE reconstruction of the same HR images (toy)", table_markdown(vae_rows, ["psnr"])
                         + "\n\nEncode + decode of the 512x512 HR images; the D4 latent has 4x the positions of the D8 one."))
    columns = {"Bicubic": sr_dirs["Bicubic"], **({"VAE-D8 reconstruction": out / "work" / "vae" / "D8"} if toy else {}),
                            **{k: v for k, v in sr_dirs.items() if k.startswith("TVT")}, "HR": images / "HR"}
    boxes = [(c.rsplit(":", 1)[0], tuple(int(v) for v in c.rsplit(":", 1)[1].split(","))) for c in crops]
    boxes = [b for b in boxes if (images / "HR" / f"{b[0]}.png").is_file()]
    if boxes:
        crop_figure(boxes, columns, out / "crops.png")
        figures.append((" / ".join(columns) + " (nearest-neighbour zoom)", "crops.png"))
    for title, (stage, keys) in (CURVES.items() if toy else []):
        name = f"loss_{stage}.png"
        plot_curves({k: loss_curve(toy.runs[stage], k) for k in keys}, out / name, title)
        figures.append((f"Loss curve: {title}", name))
    sections.append(("Run", f"- wall time {seconds:.0f} s on {torch.get_num_threads()} CPU threads ({platform.processor() or platform.machine()})"
                     + (f"\n- models: {', '.join(f'{k} {v}' for k, v in toy.runs.items())}" if toy else "")))
    return write_report(out, "TVT demo report", sections, figures)
