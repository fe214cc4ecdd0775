"""The demo's text-legibility section: Fig. 1(a)'s claim (VAE-D8 loses small characters, VAE-D4 keeps them) measured
on the bundled text samples (data/samples/text) by a recognizer nobody here trained (PP-OCRv4, tvt.text).

    rows, dirs = text_legibility(samples, out_dir, model=toy.model, vaes={"VAE-D8 ...": toy.sd / "vae", ...})

Rows: HR as it is, bicubic x4 of the LR, each VAE's reconstruction of the HR (encode + decode), and the one-step
model on the LR. ACC/NED by the RealCE protocol (tvt.text.protocol), pooled over the 40 lines.
"""
from __future__ import annotations

from pathlib import Path

TEXT_CROPS = ["en_01:0,48,256,96", "zh_02:0,96,256,96"]  # name:x,y,w,h of the crop figure (whole lines)


def _vae_reconstruct(vae_dir: Path, kind: str, hr_dir: Path, out: Path) -> Path:
    import torch

    from ..io import list_images, pil_to_tensor, read_image, save_image
    from ..models.vae import load_vae_d4, load_vae_d8

    vae = (load_vae_d8(vae_dir, subfolder=None) if kind == "d8" else load_vae_d4(vae_dir)).eval()
    with torch.inference_mode():
        for path in list_images(hr_dir):
            x = pil_to_tensor(read_image(path))[None] * 2 - 1  # (1, 3, H, W) in [-1, 1]
            rec = ((vae.decode(vae.encode(x).latent_dist.mode()).sample + 1) / 2).clamp(0, 1)
            save_image(rec[0], out / f"{path.stem}.png")
    return out


def text_legibility(samples: Path, out_dir: Path, model: str | Path | None = None,
                    vaes: dict[str, tuple[Path, str]] | None = None, recognizer: str = "ppocr") -> tuple[dict, dict]:
    """Score every row; returns ({label: summary of tvt.text.evaluate}, {label: image folder}).
    ``vaes``: {label: (VAE folder, "d8" | "d4")}."""
    from ..inference import TVTPipeline, super_resolve_folder
    from ..io import list_images
    from ..text.evaluate import score_images

    hr, lr, annos = samples / "HR", samples / "LR", samples / "annos"
    dirs = {"HR": hr}
    dirs["Bicubic"] = super_resolve_folder(TVTPipeline.from_pretrained("bicubic"), lr, out_dir / "bicubic", progress=False).folder
    for i, (label, (folder, kind)) in enumerate((vaes or {}).items()):
        dirs[label] = _vae_reconstruct(Path(folder), kind, hr, out_dir / f"vae{i}")
    if model is not None:
        pipe = TVTPipeline.from_pretrained(str(model))
        dirs["TVT (one step, from the LR)"] = super_resolve_folder(pipe, lr, out_dir / "tvt", progress=False).folder
    rows = {}
    for label, folder in dirs.items():
        images = {p.stem: p for p in list_images(folder)}
        rows[label] = score_images(images, annos, recognizer)["summary"]
    return rows, dirs


def toy_vaes(toy) -> dict[str, tuple[Path, str]]:
    """The toy run's VAE-D8 teacher and VAE-D4 as ``text_legibility``'s ``vaes`` (none without a toy run)."""
    if toy is None:
        return {}
    return {"VAE-D8 reconstruction (toy)": (toy.sd / "vae", "d8"), "VAE-D4 reconstruction (toy)": (toy.vae_d4, "d4")}


def text_section(rows: dict) -> str:
    """The report's Markdown: one table (ACC/NED overall and per language) and what the recognizer is."""
    lines = ["| | ACC | NED | ACC (CHN) | NED (CHN) | ACC (ENG) | NED (ENG) |", "|---|---|---|---|---|---|---|"]
    for label, s in rows.items():
        lines.append(f"| {label} | " + " | ".join(f"{s[k]:.3f}" for k in ("ocr_acc", "ocr_ned", "ocr_acc_CHN", "ocr_ned_CHN",
                                                                          "ocr_acc_ENG", "ocr_ned_ENG")) + " |")
    any_row = next(iter(rows.values()))
    rec = any_row["recognizer"]
    reading = reading_of(rows)
    return ("\n".join(lines) + f"\n\n{any_row['ocr_lines']} rendered text lines (20 English, 20 Chinese; "
            "data/samples/text, HR 256x256, LR 64x64 from our Real-ESRGAN degradation) read by "
            f"{rec['model']} ({rec['package']}) on each line's crop; RealCE protocol (exact match ACC, normalised "
            "edit distance NED, case-insensitive, per-language character filter). The paper's Fig. 1(a) claim: the "
            "VAE-D8 reconstruction loses small characters that the VAE-D4 keeps; Table 3 measures it on RealCE."
            + (f"\n\n**This run:** {reading}" if reading else ""))


def reading_of(rows: dict) -> str:
    """What the table shows, in words, whichever way it goes (NED: partial credit, so it moves before ACC)."""
    ned = {k: v["ocr_ned"] for k, v in rows.items()}
    d8 = next((k for k in ned if "D8" in k), None)
    d4 = next((k for k in ned if "D4" in k), None)
    tvt = next((k for k in ned if k.startswith("TVT")), None)
    out = []
    if d8 and d4:
        verdict = "keeps more of the text than" if ned[d4] > ned[d8] else "does not keep more of the text than"
        out.append(f"The toy VAE-D4 reconstruction ({ned[d4]:.3f} NED) {verdict} the toy VAE-D8 one ({ned[d8]:.3f}), "
                   f"against {ned['HR']:.3f} for the HR itself.")
    if tvt and "Bicubic" in ned:
        verdict = "reads better than" if ned[tvt] > ned["Bicubic"] else "does not read better than"
        out.append(f"The toy one-step model on the x4 LR ({ned[tvt]:.3f}) {verdict} bicubic ({ned['Bicubic']:.3f}): "
                   "the LR lines are 5-7 px high, and the toy model is trained for minutes on 12 DRealSR crops.")
    return " ".join(out)
