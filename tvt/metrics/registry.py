"""Our metric names -> pyiqa metrics with the options of the paper's Table 2 protocol.

    metric = build_metric("psnr", device="cpu")      # a pyiqa InferenceModel
    score = metric(sr, hr)                            # (B, 3, H, W) in [0, 1] -> (B,)

PSNR/SSIM follow OSEDiff/TVT: Y channel of YCbCr (BT.601), no border crop. pyiqa needs BOTH
``test_y_channel=True`` and ``color_space='ycbcr'``; ``test_y_channel`` alone goes through YIQ, which gives
other numbers. Metrics whose weights cannot be found raise ``MetricUnavailable`` with a one-line reason naming
the weights and pyiqa's cache folder, fast (offline, hub look-ups fail at once: tvt.hub).
"""
from __future__ import annotations

import contextlib
import io
import os
import re
from dataclasses import dataclass, field

from ..errors import InputError
from ..hub import no_hub_retries


@dataclass(frozen=True)
class MetricSpec:
    name: str            # our name (column in tables)
    pyiqa_name: str      # pyiqa registry name
    kind: str            # "fr" (needs GT), "nr" (no reference), "fid" (folder vs folder), "text" (needs annotations)
    options: dict = field(default_factory=dict)
    protocol: str = ""   # short human description written into summaries
    label: str = ""      # column header in tables (paper's spelling)
    weights: str = ""    # weights to name when pyiqa fails before saying which file it wanted

    @property
    def needs_gt(self) -> bool:
        return self.kind in ("fr", "fid")


_Y = dict(test_y_channel=True, color_space="ycbcr")
_AFINE = "OpenAI CLIP ViT-B-32.pt in ~/.cache/clip and afine.pth in the pyiqa cache"
# Order = columns of the paper's Table 2, then extras (maniqa, niqe, fid).
METRICS: dict[str, MetricSpec] = {s.name: s for s in [
    # full-reference
    MetricSpec("psnr", "psnr", "fr", _Y, "Y of YCbCr (BT.601), no border crop", "PSNR"),
    MetricSpec("ssim", "ssim", "fr", _Y, "Y of YCbCr (BT.601), no border crop", "SSIM"),
    MetricSpec("fsim", "fsim", "fr", {}, "pyiqa default (RGB)", "FSIM"),
    MetricSpec("lpips", "lpips", "fr", {}, "pyiqa default (AlexNet, RGB)", "LPIPS"),
    MetricSpec("afine-fr", "afine_fr", "fr", {}, "pyiqa default (A-FINE fidelity part)", "AFINE-FR", _AFINE),
    MetricSpec("dists", "dists", "fr", {}, "pyiqa default", "DISTS"),
    # no-reference
    MetricSpec("clipiqa", "clipiqa", "nr", {}, "pyiqa default", "CLIPIQA"),
    MetricSpec("musiq", "musiq", "nr", {}, "pyiqa default (KonIQ)", "MUSIQ"),
    MetricSpec("qalign", "qalign", "nr", {}, "pyiqa default (quality)", "Q-Align"),
    MetricSpec("topiq_nr", "topiq_nr", "nr", {}, "pyiqa default (KonIQ)", "TOPIQ",
               "timm resnet50 (HF hub cache) + cfanet_nr_koniq_res50-9a73138b.pth in the pyiqa cache"),
    MetricSpec("hyperiqa", "hyperiqa", "nr", {}, "pyiqa default", "HyperIQA",
               "timm resnet50 (HF hub cache) + HyperIQA-resnet50-koniq10k-c96c41b1.pth in the pyiqa cache"),
    MetricSpec("afine-nr", "afine_nr", "nr", {}, "pyiqa default (A-FINE naturalness part)", "AFINE-NR", _AFINE),
    MetricSpec("maniqa", "maniqa", "nr", {}, "pyiqa default (KonIQ)", "MANIQA",
               "timm vit_base_patch8_224 (HF hub cache) + ckpt_koniq10k.pt in the pyiqa cache"),
    MetricSpec("niqe", "niqe", "nr", {}, "pyiqa default", "NIQE"),
    # distribution
    MetricSpec("fid", "fid", "fid", {}, "pyiqa fid, SR folder vs GT folder", "FID"),
    # text (tvt.text, not pyiqa): RealCE annotations of each image, pooled over text lines
    MetricSpec("ocr_acc", "", "text", {}, "RealCE recognition protocol: exact-match rate over text lines", "ACC"),
    MetricSpec("ocr_ned", "", "text", {}, "RealCE recognition protocol: mean 1 - ED / max length over text lines", "NED"),
]}

TABLE3_METRICS = ("psnr", "ssim", "lpips", "ocr_acc", "ocr_ned")  # the paper's Table 3 (RealCE)
TABLE2_METRICS = ("psnr", "ssim", "fsim", "lpips", "afine-fr", "dists",
                  "clipiqa", "musiq", "qalign", "topiq_nr", "hyperiqa", "afine-nr")  # the paper's Table 2


class MetricUnavailable(RuntimeError):  # reported in the summary, not fatal
    """A metric cannot be built here (weights absent offline, missing optional package)."""


def get_spec(name: str) -> MetricSpec:
    if name not in METRICS:
        raise InputError(f"unknown metric '{name}'; known: {', '.join(METRICS)}")
    return METRICS[name]


def parse_metric_list(text: str | list[str]) -> list[str]:
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    for n in names:
        get_spec(n)
    return list(dict.fromkeys(names))


def lower_better(name: str) -> bool:
    """Direction without building the metric (pyiqa's registry holds it in its default config)."""
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    if get_spec(name).kind == "text":
        return False
    return bool(DEFAULT_CONFIGS[get_spec(name).pyiqa_name].get("lower_better", False))


def pyiqa_cache_dir() -> str:
    from pyiqa.utils.download_util import DEFAULT_CACHE_DIR

    return DEFAULT_CACHE_DIR


def build_metric(name: str, device: str = "cpu"):
    """pyiqa.create_metric with our options. Raises MetricUnavailable (one-line reason) when weights are absent."""
    spec = get_spec(name)
    import pyiqa

    log = io.StringIO()
    try:
        with no_hub_retries(), contextlib.redirect_stdout(log):  # pyiqa prints 'Downloading: "URL" to PATH' first
            return pyiqa.create_metric(spec.pyiqa_name, device=device, **spec.options)
    except Exception as err:  # noqa: BLE001 - any failure to build means "unavailable", with the reason
        raise MetricUnavailable(_reason(spec, err, log.getvalue())) from err


def _reason(spec: MetricSpec, err: Exception, printed: str) -> str:
    first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
    if isinstance(err, (ModuleNotFoundError, ImportError)):
        return f"pyiqa '{spec.pyiqa_name}' needs a missing Python package: {first}"
    if spec.pyiqa_name.startswith("afine") and "urlopen" in first:  # its CLIP loader prints nothing before failing
        return ("weights absent and download failed (URLError): CLIP ViT-B-32.pt (openaipublic.azureedge.net/clip/models/"
                f".../ViT-B-32.pt) -> {os.path.expanduser('~/.cache/clip')}, then the A-FINE checkpoint -> {pyiqa_cache_dir()}")
    m = re.search(r'Downloading: "([^"]+)" to (\S+)', printed)
    if m:
        return (f"weights absent and download failed ({type(err).__name__}): {m.group(1)} -> put the file at {m.group(2)}")
    if spec.weights:
        return f"weights absent (offline, {type(err).__name__}): {spec.weights} ({pyiqa_cache_dir()})"
    if "LocalEntryNotFound" in type(err).__name__ or "hub" in first.lower() or "connection" in first.lower():
        return (f"weights absent (HuggingFace hub backbone/checkpoint of pyiqa '{spec.pyiqa_name}', offline): "
                f"{type(err).__name__}; fill the HF cache (~/.cache/huggingface/hub) and {pyiqa_cache_dir()}")
    return f"cannot build pyiqa '{spec.pyiqa_name}': {type(err).__name__}: {first}"
