"""Text recognizers for the RealCE protocol, by name; each reads line crops and says what it is.

    rec = build_recognizer("ppocr")              # default: PP-OCRv4's recognizer shipped in rapidocr-onnxruntime
    rec = build_recognizer("realce-crnn")        # Real-CE's official pair (weights supplied by the user)
    texts = rec.read(crops, langs)               # crops: (h, w, 3) uint8 BGR, langs: "CHN" | "ENG"
    rec.describe()                               # written into summary.json

Scores from different recognizers are not comparable: every summary and table names the recognizer.
Neither downloads anything: PP-OCR's ONNX weights are package data of its wheel, the CRNN weights are files the
user puts under the weights root (a missing one is a one-line error naming it).
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import TVTError
from .protocol import ALPHABET_FILE

RECOGNIZERS = ("ppocr", "realce-crnn")
DEFAULT_RECOGNIZER = "ppocr"  # offline; Real-CE's own pair needs its weights (docs/fidelity.md)
CRNN_FILES = {"CHN": "scene_base_CRNN.pth", "ENG": "crnn.pth"}  # names of Real-CE's release
CRNN_SOURCE = ("Real-CE's recognizer weights (https://github.com/mjq11302010044/Real-CE, README: "
               "'Chinese and English recognizer weights', Google Drive)")


class RecognizerUnavailable(TVTError):
    """A recognizer's weights or package are missing: one line naming them and where they go."""


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


class PPOCRRecognizer:
    """PP-OCRv4 (ch_PP-OCRv4_rec, Chinese + English) through rapidocr-onnxruntime's TextRecognizer, on the
    protocol's crops (no detector, no angle classifier). Output is lower-cased by the protocol, not here."""

    name = "ppocr"

    def __init__(self, threads: int = 1):  # one thread: steady on shared CPUs; 0 = onnxruntime's default
        try:
            import rapidocr_onnxruntime
            from rapidocr_onnxruntime.ch_ppocr_rec import TextRecognizer
            from rapidocr_onnxruntime.utils import read_yaml
        except ImportError as err:
            raise RecognizerUnavailable(f"recognizer 'ppocr' needs rapidocr-onnxruntime (pip install -r "
                                        f"requirements.txt): {err}") from None
        root = Path(rapidocr_onnxruntime.__file__).parent
        cfg = read_yaml(str(root / "config.yaml"))["Rec"]
        self.model_path = root / cfg["model_path"]
        if not self.model_path.is_file():
            raise RecognizerUnavailable(f"recognizer 'ppocr': {self.model_path} missing from the rapidocr-onnxruntime wheel")
        cfg = {**cfg, "model_path": str(self.model_path)}
        if threads:
            cfg["intra_op_num_threads"] = cfg["inter_op_num_threads"] = threads
        self._rec = TextRecognizer(cfg)

    def read(self, crops: list[np.ndarray], langs: list[str]) -> list[str]:
        if not crops:
            return []
        results, _ = self._rec([np.ascontiguousarray(c) for c in crops])
        return [text for text, _score in results]

    def describe(self) -> dict:
        from importlib.metadata import version

        return {"name": self.name, "model": f"PP-OCRv4 recognizer ({self.model_path.name}, sha256 {_sha(self.model_path)})",
                "package": f"rapidocr-onnxruntime {version('rapidocr-onnxruntime')}",
                "input": "BGR crop, height 48, width by aspect (PaddleOCR's resize_norm_img)"}


class RealCECRNNRecognizer:
    """Real-CE's pair with its preprocessing: crops resized (bicubic) to height 32 and width
    clamp(int(32 * w / h), 16, 1024); CHN on BGR in [0, 255], ENG on 0.299 c0 + 0.587 c1 + 0.114 c2 of the
    BGR crop / 255 (Real-CE's weights, applied to BGR as its code does). As in Real-CE the Chinese network
    runs in training mode (batch-norm over the crop itself; its ``model.eval()`` is commented out)."""

    name = "realce-crnn"

    def __init__(self, folder: str | Path | None = None, device: str = "cpu"):
        import torch

        from .crnn import CRNNChinese, CRNNEnglish, load_state

        self.paths = crnn_weight_paths(folder)
        missing = [str(p) for p in self.paths.values() if not p.is_file()]
        if missing:
            raise RecognizerUnavailable(f"recognizer 'realce-crnn': weights missing: {', '.join(missing)}; get "
                                        f"{CRNN_SOURCE} and put them there (or use recognizer=ppocr)")
        self.alphabet = {"CHN": [" ", *ALPHABET_FILE.read_text(encoding="utf-8").splitlines()[0]],
                         "ENG": list("-0123456789abcdefghijklmnopqrstuvwxyz")}
        load = lambda p: torch.load(p, map_location="cpu", weights_only=False)  # noqa: E731 - released pickles
        self.models = {"CHN": load_state(CRNNChinese(len(self.alphabet["CHN"])), load(self.paths["CHN"])).to(device).train(),
                       "ENG": load_state(CRNNEnglish(), load(self.paths["ENG"])).to(device).eval()}
        self.device = device

    def _input(self, crop: np.ndarray, lang: str):
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None].float()  # (1, 3, h, w) BGR 0..255
        width = max(min(int(crop.shape[1] / float(crop.shape[0]) * 32), 1024), 16)
        x = F.interpolate(x, (32, width), mode="bicubic")
        if lang == "ENG":
            x = x / 255.0
            x = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
        return x.to(self.device)

    def read(self, crops: list[np.ndarray], langs: list[str]) -> list[str]:
        import torch

        from .crnn import ctc_greedy

        with torch.no_grad():
            return [ctc_greedy(self.models[lang](self._input(c, lang)), self.alphabet[lang])[0]
                    for c, lang in zip(crops, langs)]

    def describe(self) -> dict:
        return {"name": self.name, "model": ", ".join(f"{lang}: {p.name} (sha256 {_sha(p)})" for lang, p in self.paths.items()),
                "package": "tvt.text.crnn (Real-CE's architectures)", "input": "Real-CE's preprocessing"}


def crnn_weight_paths(folder: str | Path | None = None) -> dict[str, Path]:
    """Where the official CRNN weights are looked for: ``<weights root>/realce/`` unless ``folder`` is given."""
    from ..roots import weights_root

    base = Path(folder).expanduser() if folder else weights_root() / "realce"
    return {lang: base / name for lang, name in CRNN_FILES.items()}


@lru_cache(maxsize=2)
def build_recognizer(name: str = DEFAULT_RECOGNIZER, **options):
    """A recognizer by name (cached: one ONNX session or model pair per process)."""
    if name == "ppocr":
        return PPOCRRecognizer(**options)
    if name == "realce-crnn":
        return RealCECRNNRecognizer(**options)
    raise RecognizerUnavailable(f"unknown recognizer '{name}'; known: {', '.join(RECOGNIZERS)}")
