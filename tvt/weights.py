"""Every weight file the project can use: where it is looked for, whether it is there, which commands need it.

    for w in WEIGHTS: print(w.name, w.status())          # what `python scripts/doctor.py` prints
    fetch(WEIGHTS_BY_NAME["vgg16"])                      # the same clients the loaders use (hub / torch.hub)

Nothing is ever downloaded implicitly: loaders fail with a message naming the file, and ``fetch`` is only called
by the doctor when asked (``--download``). Local weight folders live under the weights root (``TVT_WEIGHTS``,
default ``weights/`` of the checkout).
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from .errors import TVTError
from .models.loading import SD21_BASE
from .roots import weights_root

log = logging.getLogger(__name__)


def torch_hub_checkpoints() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


@dataclass
class Status:
    present: bool
    where: Path | str
    size: int = 0
    sha256: str = ""
    detail: str = ""


@dataclass
class WeightFile:
    """One weight file or model folder. ``locate()`` returns the candidates in the order loaders try them."""

    name: str
    what: str
    needed_by: str
    source: str  # a hub id ("hub:owner/name[/file]") or a URL
    locate: Callable[[], list[Path]] = field(repr=False, default=lambda: [])
    check: Optional[Callable[[], Status]] = field(repr=False, default=None)  # for things that are not plain files

    def status(self, checksum: bool = True) -> Status:
        if self.check is not None:
            return self.check()
        candidates = self.locate()
        for path in candidates:
            if path.is_file():
                return Status(True, path, path.stat().st_size, sha256(path) if checksum else "")
            if path.is_dir() and any(path.iterdir()):
                size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
                return Status(True, path, size, "", "folder")
        return Status(False, " or ".join(str(p) for p in candidates) or "-")


def sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# The catalog
# ---------------------------------------------------------------------------------------------
def _sd21_status() -> Status:
    """SD 2.1-base: a local diffusers folder (weights/sd21-base) or the hub cache."""
    local = weights_root() / "sd21-base"
    if (local / "model_index.json").is_file():
        size = sum(p.stat().st_size for p in local.rglob("*") if p.is_file())
        return Status(True, local, size, "", "folder")
    try:
        from huggingface_hub import snapshot_download

        cached = Path(snapshot_download(SD21_BASE, local_files_only=True))
        size = sum(p.stat().st_size for p in cached.rglob("*") if p.is_file())
        return Status(True, cached, size, "", "hub cache")
    except Exception:  # noqa: BLE001 - not in the cache
        return Status(False, f"{local} or the HuggingFace cache ({SD21_BASE})")


def _metric_status(metric: str) -> Callable[[], Status]:
    def check() -> Status:
        from .metrics.registry import MetricUnavailable, build_metric, pyiqa_cache_dir

        try:
            build_metric(metric)
            return Status(True, pyiqa_cache_dir(), detail="builds")
        except MetricUnavailable as err:
            return Status(False, pyiqa_cache_dir(), detail=str(err))
    return check


def _crnn_paths() -> dict[str, Path]:
    from .text.recognizers import crnn_weight_paths

    return crnn_weight_paths()


def _ppocr_status() -> Status:
    from .text.recognizers import PPOCRRecognizer, RecognizerUnavailable

    try:
        path = PPOCRRecognizer().model_path
        return Status(True, path, path.stat().st_size, "", "package data")
    except RecognizerUnavailable as err:
        return Status(False, "the rapidocr-onnxruntime wheel", detail=str(err))


WEIGHTS: list[WeightFile] = [
    WeightFile("sd21-base", "Stable Diffusion 2.1-base (UNet, VAE-D8, CLIP text encoder, scheduler)",
               "VAE stage 1, ISR training, inference of exports and the official release",
               f"hub:{SD21_BASE}", check=_sd21_status),
    WeightFile("vgg16", "torchvision VGG16 (ImageNet), the LPIPS loss backbone", "VAE stages and ISR training",
               "https://download.pytorch.org/models/vgg16-397923af.pth",
               lambda: [torch_hub_checkpoints() / "vgg16-397923af.pth"]),
    WeightFile("ram", "RAM Swin-L tagger (ram_swin_large_14m.pth)", "ISR training (prompt.extractor=ram), inference of "
               "exports prompted with RAM/DAPE", "hub:xinyu1205/recognize_anything_model/ram_swin_large_14m.pth",
               lambda: [weights_root() / "ram_swin_large_14m.pth"]),
    WeightFile("dape", "DAPE, SeeSR's degradation-aware RAM fine-tune (DAPE.pth)", "inference of exports prompted with "
               "DAPE (the paper's setting)", "the SeeSR release (github.com/cswry/SeeSR): DAPE.pth",
               lambda: [weights_root() / "DAPE.pth"]),
    WeightFile("tvt-release", "the official TVT weights (ckp/: model_TVT.pkl, vae.ckpt, TVTUNet/)",
               "infer/eval --model weights/tvt-release", "hub:Joypop/TVTSR",
               lambda: [weights_root() / "tvt-release" / "model_TVT.pkl", weights_root() / "tvt-release" / "ckp" / "model_TVT.pkl"]),
    *[WeightFile(f"realce-crnn-{lang.lower()}", f"Real-CE's official {lang} text recognizer ({name})",
                 "eval ocr_acc/ocr_ned with recognizer=realce-crnn (Table 3 as Real-CE measures it)",
                 "Real-CE's README (github.com/mjq11302010044/Real-CE): recognizer weights, Google Drive",
                 lambda lang=lang: [_crnn_paths()[lang]])
      for lang, name in (("CHN", "scene_base_CRNN.pth"), ("ENG", "crnn.pth"))],
    WeightFile("ppocr", "PP-OCRv4 text recognizer (ch_PP-OCRv4_rec_infer.onnx, package data of rapidocr-onnxruntime)",
               "eval ocr_acc/ocr_ned (default recognizer), the demo's text section", "pip: rapidocr-onnxruntime",
               check=lambda: _ppocr_status()),
    *[WeightFile(f"pyiqa:{m}", f"pyiqa '{m}' metric weights", "scripts/eval.py (Table 2)", "pyiqa's model zoo (auto)",
                 check=_metric_status(m))
      for m in ("lpips", "dists", "afine-fr", "clipiqa", "musiq", "qalign", "topiq_nr", "hyperiqa", "afine-nr")],
]
WEIGHTS_BY_NAME = {w.name: w for w in WEIGHTS}


def fetch(weight: WeightFile) -> Path:
    """Download ``weight`` with the client its loaders use (huggingface_hub / torch.hub); prints what it does."""
    from .hub import offline

    if offline():
        raise TVTError(f"{weight.name}: the hub/internet is not reachable from here; copy {weight.what} to "
                       f"{weight.status().where} from a machine with internet")
    if weight.name == "sd21-base":
        from huggingface_hub import snapshot_download

        dest = weights_root() / "sd21-base"
        log.info("downloading %s -> %s", SD21_BASE, dest)
        return Path(snapshot_download(SD21_BASE, local_dir=dest))
    if weight.name.startswith("pyiqa:"):
        from .metrics.registry import build_metric

        log.info("building pyiqa metric %s (pyiqa downloads its weights into its cache)", weight.name[6:])
        build_metric(weight.name[6:])
        return Path(weight.status().where)
    if weight.source.startswith("hub:"):
        from huggingface_hub import hf_hub_download, snapshot_download

        owner, repo, *filename = weight.source[4:].split("/")
        dest = weight.locate()[0]
        log.info("downloading %s -> %s", weight.source[4:], dest)
        if filename:
            return Path(hf_hub_download(f"{owner}/{repo}", "/".join(filename), local_dir=dest.parent))
        return Path(snapshot_download(f"{owner}/{repo}", local_dir=dest.parent))
    if weight.source.startswith("http"):
        import torch

        dest = weight.locate()[0]
        dest.parent.mkdir(parents=True, exist_ok=True)
        log.info("downloading %s -> %s", weight.source, dest)
        torch.hub.download_url_to_file(weight.source, str(dest))
        return dest
    raise TVTError(f"{weight.name}: no automatic download; get it from {weight.source} and put it at {weight.locate()[0]}")
