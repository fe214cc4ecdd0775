"""The demo's report: one Markdown text, also rendered to HTML (the markdown package), plus loss-curve plots."""
from __future__ import annotations

import html
from pathlib import Path

from tvt.io import atomic_path


def plot_curves(curves: dict[str, list[tuple[int, float]]], path: str | Path, title: str) -> Path:
    """One PNG with one line per series (log-scale y when all values are positive)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    for name, pts in curves.items():
        if pts:
            ax.plot([s for s, _ in pts], [v for _, v in pts], label=name, lw=1.2)
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
