"""RealCE's text-recognition protocol (ACC / NED of Table 3), from Real-CE's ``basicsr/metrics/recognition.py``
(``calculate_recognition_case_insensitive_langdivide``) and the aggregation in its ``models/sr_model.py``.

    lines = read_annotations("annos/img_01.txt")        # [TextLine(polygon (4, 2) int, text, line_no)]
    crop = crop_line(sr_bgr, lines[0].polygon)           # (h, w, 3): minAreaRect -> perspective warp
    lang = language(lines[0].text)                       # "CHN" if any CJK ideograph, else "ENG"
    gt, pred = normalize(lines[0].text, lang), normalize(recognized, lang)
    scores = aggregate([(pred, gt), ...])                # {"acc", "ned", "lines"}

Annotation lines are ``x1,y1,x2,y2,x3,y3,x4,y4,transcript`` (the transcript may hold commas), in the HR image's
pixels. Bad annotations: a line that is not 8 integers and a transcript is an ``AnnotationError`` naming the file
and line; a degenerate polygon (its rectangle under 1 pixel wide or high) or an empty transcript is skipped and
counted (``Skip``), so scores say how many lines they rest on.
"""
from __future__ import annotations

import string
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import InputError

ALPHABET_FILE = Path(__file__).with_name("realce_benchmark_alphabet.txt")  # Real-CE's benchmark.txt, unchanged
ENG_CHARS = frozenset(string.digits + string.ascii_letters)  # Real-CE's voc_type "upper"


class AnnotationError(InputError):
    """A RealCE annotation file that cannot be read: names the file and line."""


@dataclass(frozen=True)
class TextLine:
    polygon: np.ndarray  # (4, 2) int32, x then y, HR pixels
    text: str
    line_no: int  # 1-based line in the annotation file


@dataclass(frozen=True)
class Skip:
    where: str  # file:line
    reason: str


# ---------------------------------------------------------------------------------------------
# Annotations
# ---------------------------------------------------------------------------------------------
def annotation_text(path: Path) -> str:
    """The file as text: UTF-8, else GBK (RealCE's test annotations)."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:  # RealCE's test annotations are GBK (Real-CE opens them with encoding="gbk")
        try:
            return raw.decode("gbk")
        except UnicodeDecodeError:
            raise AnnotationError(f"{path}: neither UTF-8 nor GBK text") from None


def read_annotations(path: str | Path) -> tuple[list[TextLine], list[Skip]]:
    """The text lines of one image, and the lines skipped (empty transcript). Raises AnnotationError."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"annotation file not found: {path}")
    lines, skips = [], []
    for no, raw in enumerate(annotation_text(path).splitlines(), start=1):
        if not raw.strip():
            continue
        items = raw.split(",")
        try:
            coords = [int(float(v)) for v in items[:8]]  # Real-CE: np.array(...).astype(int)
        except ValueError:
            coords = []
        if len(items) < 9 or len(coords) != 8:
            raise AnnotationError(f"{path}:{no}: expected 'x1,y1,x2,y2,x3,y3,x4,y4,transcript', got {raw[:60]!r}")
        text = ",".join(items[8:])
        if not text.strip():
            skips.append(Skip(f"{path.name}:{no}", "empty transcript"))
            continue
        lines.append(TextLine(np.array(coords, dtype=np.int32).reshape(4, 2), text, no))
    return lines, skips


# ---------------------------------------------------------------------------------------------
# Crops
# ---------------------------------------------------------------------------------------------
def line_rect(polygon: np.ndarray) -> tuple[tuple[float, float], tuple[float, float], float]:
    """The polygon's minimum-area rectangle as OpenCV's ((cx, cy), (w, h), angle), with w along the text.

    Real-CE swaps w/h when |angle| > 45 and sets the angle to -(90 - |angle|); OpenCV reports angles in
    [-90, 0), so that flips the sign of clockwise-tilted lines and their crop comes out tilted by twice the
    angle. The same rectangle is (h, w, angle + 90): equal to Real-CE's for axis-aligned and counter-clockwise
    lines (most of RealCE), right for the others (docs/fidelity.md).
    """
    import cv2

    center, (w, h), angle = cv2.minAreaRect(np.asarray(polygon, dtype=np.int32))
    if abs(angle) > 45:
        w, h, angle = h, w, angle + 90
    return center, (w, h), angle


def crop_line(image: np.ndarray, polygon: np.ndarray) -> np.ndarray | None:
    """Perspective-warped crop (h, w, C) of one text line of an (H, W, C) image; None when the rectangle is
    under 1 pixel wide or high. Box corners are truncated to integers, as Real-CE's ``np.int0``."""
    import cv2

    rect = line_rect(polygon)
    width, height = int(rect[1][0]), int(rect[1][1])
    if width < 1 or height < 1:
        return None
    box = cv2.boxPoints(rect).astype(np.intp).astype(np.float32)  # bottom-left, top-left, top-right, bottom-right
    dst = np.array([[0, height - 1], [0, 0], [width - 1, 0], [width - 1, height - 1]], dtype=np.float32)
    return cv2.warpPerspective(image, cv2.getPerspectiveTransform(box, dst), (width, height))


# ---------------------------------------------------------------------------------------------
# Strings and scores
# ---------------------------------------------------------------------------------------------
def language(text: str) -> str:
    """Real-CE's ``get_lang``: "CHN" if any character lies in U+4E00..U+9FA5, else "ENG"."""
    return "CHN" if any("\u4e00" <= ch <= "\u9fa5" for ch in text) else "ENG"


@lru_cache(maxsize=1)
def chn_chars() -> frozenset[str]:
    """Real-CE's voc_type "benchmark": the Chinese recognizer's alphabet (7,934 characters, no uppercase)."""
    return frozenset(ALPHABET_FILE.read_text(encoding="utf-8").splitlines()[0])


def normalize(text: str, lang: str) -> str:
    """Lower-case, keep the language's characters (ENG: digits and letters; CHN: the benchmark alphabet), drop
    spaces: Real-CE's ``str_filt(text.lower(), voc_type).replace(" ", "")``.

    Real-CE lower-cases the ground truth only; its recognizers emit no upper case (English 0-9a-z, Chinese the
    benchmark alphabet), so lower-casing predictions too changes nothing for them and keeps the comparison
    case-insensitive for a recognizer that emits capitals (PP-OCR).
    """
    keep = ENG_CHARS if lang == "ENG" else chn_chars()
    return "".join(ch for ch in text.lower() if ch in keep).replace(" ", "")


def edit_distance(a: str, b: str) -> int:
    from rapidfuzz.distance import Levenshtein

    return int(Levenshtein.distance(a, b))  # unit costs, as the editdistance package Real-CE uses


def line_ned(pred: str, gt: str) -> float:
    """Real-CE's per-line term (max_len - ED) / (max_len + 1e-10): 1 for a match, 0 when both are empty."""
    max_len = max(len(pred), len(gt))
    return (max_len - edit_distance(pred, gt)) / (max_len + 1e-10)


def aggregate(pairs: list[tuple[str, str]]) -> dict:
    """ACC = exact matches / lines, NED = mean per-line term, pooled over all lines of all images (Real-CE's
    ``recognition`` / ``ned``), on normalized (pred, gt) pairs."""
    n = len(pairs)
    acc = sum(p == g for p, g in pairs) / (n + 1e-10)
    ned = sum(line_ned(p, g) for p, g in pairs) / (n + 1e-10)
    return {"acc": acc, "ned": ned, "lines": n}
