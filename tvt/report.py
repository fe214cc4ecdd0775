"""Demo/run reports: loss curves from tensorboard logs, a metrics table, image crops -> Markdown + HTML."""
from __future__ import annotations

import html
from pathlib import Path

from .io import atomic_path


def read_scalars(logdir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """All scalar series of the tensorboard event files under ``logdir``: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    series: dict[str, list[tuple[int, float]]] = {}
    for events in sorted(Path(logdir).rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events.parent), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            series.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return {k: sorted(set(v)) for k, v in series.items()}


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


def write_report(out_dir: str | Path, title: str, sections: list[tuple[str, str]], images: list[tuple[str, str]]) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html``.

    sections: (heading, markdown body) pairs; images: (caption, path relative to out_dir).
    The HTML is a direct rendering of the same content (tables and paragraphs), no extra dependency.
    """
    out_dir = Path(out_dir)
    md = [f"# {title}\n"]
    for heading, body in sections:
        md.append(f"## {heading}\n\n{body}\n")
    if images:
        md.append("## Figures\n")
        md.extend(f"**{cap}**\n\n![{cap}]({rel})\n" for cap, rel in images)
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    with atomic_path(md_path) as tmp:
        tmp.write_text("\n".join(md))
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px}img{max-width:100%}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    for heading, body in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>{_md_to_html(body)}")
    for cap, rel in images:
        parts.append(f"<figure><img src='{html.escape(rel)}'><figcaption>{html.escape(cap)}</figcaption></figure>")
    parts.append("</body></html>")
    with atomic_path(html_path) as tmp:
        tmp.write_text("\n".join(parts))
    return md_path, html_path


def _md_to_html(body: str) -> str:
    """Just enough Markdown for our reports: pipe tables, bullet lists, paragraphs, **bold**, `code`."""
    import re

    def inline(s: str) -> str:
        s = html.escape(s)
        s = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", s)
        s = re.sub(r"&lt;u&gt;(.+?)&lt;/u&gt;", r"<u>\1</u>", s)
        return re.sub(r"`(.+?)`", r"<code>\1</code>", s)

    out, table, items = [], [], []

    def flush():
        if table:
            rows = [r for r in table if not set(r.replace("|", "").strip()) <= set("-: ")]
            cells = [[c.strip() for c in r.strip().strip("|").split("|")] for r in rows]
            out.append("<table>" + "".join(
                "<tr>" + "".join(f"<{'th' if i == 0 else 'td'}>{inline(c)}</{'th' if i == 0 else 'td'}>" for c in row) + "</tr>"
                for i, row in enumerate(cells)) + "</table>")
            table.clear()
        if items:
            out.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in items) + "</ul>")
            items.clear()

    for line in body.splitlines():
        if line.strip().startswith("|"):
            table.append(line)
        elif line.strip().startswith(("- ", "* ")):
            items.append(line.strip()[2:])
        else:
            flush()
            if line.strip():
                out.append(f"<p>{inline(line)}</p>")
    flush()
    return "\n".join(out)
