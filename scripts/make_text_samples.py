"""Render the bundled text samples (data/samples/text): 20 English and 20 Chinese lines in RealCE's annotation
format, HR 256x256 and LR 64x64 from our Real-ESRGAN degradation. Deterministic; needs the Debian fonts named in
tvt.text.samples.FONTS (fonts-dejavu-core, fonts-wqy-microhei).

    python scripts/make_text_samples.py                       # rewrites data/samples/text
    python scripts/make_text_samples.py --out /tmp/text --seed 1
"""
import tvt_scripts  # noqa: F401  first: a Ctrl-C during the imports below is one line (tvt_scripts/__init__.py)
import sys
from dataclasses import dataclass

from tvt.roots import samples_root
from tvt.text.samples import make_text_samples
from tvt_scripts._cli import command


@dataclass
class TextSamplesConfig:
    out: str = ""  # output folder (default: data/samples/text of the checkout)
    seed: int = 0  # layout, colours and degradation draws


@command(TextSamplesConfig)
def main(cfg: TextSamplesConfig) -> int:
    out = cfg.out or samples_root() / "text"
    counts = make_text_samples(out, cfg.seed)
    print(f"wrote {counts['images']} images, {counts['lines']} text lines -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
