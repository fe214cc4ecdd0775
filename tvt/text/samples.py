"""The bundled text samples: rendered text lines in RealCE's annotation format, degraded x4 by our own degradation.

    make_text_samples("data/samples/text")   # HR/*.png, LR/*.png, annos/*.txt (x1,y1,...,y4,transcript per line)

Deterministic: fixed strings, layout and colours from ``seed``, LR from ``RealESRGANDegradation`` (preset
``realesrgan``) with (seed, image index). Fonts come from Debian packages (``FONTS``: names, packages, licences);
a missing font is a one-line error naming the package. The shipped PNGs are what tests and the demo read, so
nothing here runs at test time.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import InputError

ENGLISH = ["OPEN 24 HOURS", "Fresh Coffee", "EXIT 12B", "Main Street", "No Parking", "SALE 50 OFF",
           "Bakery and Cafe", "Platform 9", "City Library", "Room 204", "Fire Exit", "Welcome Home",
           "Pharmacy", "Bus Stop 38", "Hotel Central", "Ticket Office", "Push to Open", "Station Road",
           "Mind the Gap", "Books 1987"]
CHINESE = ["欢迎光临", "营业时间", "禁止吸烟", "出口", "北京路", "新鲜水果", "请勿停车", "中国银行", "地铁站入口",
           "小心地滑", "停车场", "图书馆", "火车站", "超市", "电影院", "药店", "人民公园", "安全出口", "餐厅", "茶叶店"]
FONTS = {  # language -> (path, Debian package, licence)
    "ENG": ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "fonts-dejavu-core", "Bitstream Vera / DejaVu (free)"),
    "CHN": ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", "fonts-wqy-microhei", "Apache-2.0 or GPL-3+ with font exception"),
}
SIZE, LINES_PER_IMAGE = 256, 5  # HR images 256x256 (LR 64x64), 5 lines each: 4 English + 4 Chinese images


def _font(lang: str, px: int):
    from PIL import ImageFont

    path, package, _ = FONTS[lang]
    if not Path(path).is_file():
        raise InputError(f"font {path} not found: install the Debian package {package} (apt-get install {package})")
    return ImageFont.truetype(path, px)


def _background(rng: np.random.Generator) -> np.ndarray:
    """(SIZE, SIZE, 3) uint8: a light colour gradient with mild grain."""
    base = rng.uniform(190, 245, 3)
    tilt = rng.uniform(-25, 25, 3)
    ramp = np.linspace(-0.5, 0.5, SIZE)[None, :, None] * tilt + np.linspace(-0.5, 0.5, SIZE)[:, None, None] * tilt[::-1]
    img = base + ramp + rng.normal(0, 1, (SIZE, SIZE, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _place_line(canvas, text: str, lang: str, top: int, rng: np.random.Generator) -> list[int]:
    """Render ``text`` rotated by a small angle onto ``canvas`` (PIL RGB); returns its polygon (8 ints, clockwise
    from the top-left corner of the text box, as ICDAR/RealCE)."""
    from PIL import Image, ImageDraw

    font = _font(lang, int(rng.integers(22, 29)))
    left, t, right, bottom = font.getbbox(text)
    pad = 3
    w, h = right - left + 2 * pad, bottom - t + 2 * pad
    colour = tuple(int(c) for c in rng.integers(0, 90, 3))
    tile = Image.new("L", (w, h), 0)
    ImageDraw.Draw(tile).text((pad - left, pad - t), text, font=font, fill=255)
    angle = float(rng.choice([0.0, 0.0, -3.0, 3.0, -5.0, 5.0]))  # degrees, counter-clockwise as PIL rotates
    rot = tile.rotate(angle, resample=Image.BICUBIC, expand=True)
    x0 = int(rng.integers(4, max(5, SIZE - rot.width - 4)))
    canvas.paste(Image.new("RGB", rot.size, colour), (x0, top), rot)
    # the tile's corners, rotated about its centre as PIL does, then shifted to where the rotated tile landed
    a = math.radians(angle)
    cx, cy = w / 2, h / 2
    out = []
    for px, py in ((0, 0), (w, 0), (w, h), (0, h)):
        dx, dy = px - cx, py - cy
        rx, ry = dx * math.cos(a) + dy * math.sin(a), -dx * math.sin(a) + dy * math.cos(a)
        out += [round(x0 + rot.width / 2 + rx), round(top + rot.height / 2 + ry)]
    return out


def make_text_samples(out: str | Path, seed: int = 0) -> dict[str, int]:
    """Write ``out/{HR,LR,annos}``; returns {"images": n, "lines": n}."""
    import torch
    from PIL import Image

    from ..data.degradation import RealESRGANDegradation, load_degradation_config
    from ..io import save_image

    out = Path(out)
    for sub in ("HR", "LR", "annos"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    degradation = RealESRGANDegradation(load_degradation_config("realesrgan"))
    rng = np.random.default_rng(seed)
    jobs = [("en", "ENG", ENGLISH), ("zh", "CHN", CHINESE)]
    index, lines = 0, 0
    for prefix, lang, texts in jobs:
        for k in range(0, len(texts), LINES_PER_IMAGE):
            name = f"{prefix}_{k // LINES_PER_IMAGE + 1:02d}"
            canvas = Image.fromarray(_background(rng))
            step = SIZE // LINES_PER_IMAGE
            annos = []
            for j, text in enumerate(texts[k:k + LINES_PER_IMAGE]):
                poly = _place_line(canvas, text, lang, 4 + j * step, rng)
                annos.append(",".join(map(str, poly)) + "," + text)
            hr = torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 255).permute(2, 0, 1)[None]  # (1, 3, H, W)
            lr = degradation(hr, [index], seed)["lr"][0]  # (3, H/4, W/4)
            save_image(canvas, out / "HR" / f"{name}.png")
            save_image(lr, out / "LR" / f"{name}.png")
            (out / "annos" / f"{name}.txt").write_text("\n".join(annos) + "\n", encoding="utf-8")
            index, lines = index + 1, lines + len(annos)
    return {"images": index, "lines": lines}
