import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never try the hub from tests
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest
import torch

torch.set_num_threads(2)

SHARED = Path(__file__).resolve().parents[2] / "shared"
BENCH = SHARED / "benchmarks"


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory) -> Path:
    """A tiny random SD 2.1-base-shaped diffusers folder (unet/vae/text_encoder/tokenizer/scheduler)."""
    from tvt.testing import make_tiny_sd

    return make_tiny_sd(tmp_path_factory.mktemp("tiny_sd"))


@pytest.fixture(scope="session")
def tiny_vae_d4(tmp_path_factory) -> Path:
    from tvt.testing import make_tiny_vae_d4

    return make_tiny_vae_d4(tmp_path_factory.mktemp("tiny_vae_d4"))


@pytest.fixture(scope="session")
def realsr() -> Path:
    path = BENCH / "RealSR"
    if not path.is_dir():
        pytest.fail(f"benchmark data missing: {path} (../shared/benchmarks must sit beside the checkout)")
    return path


@pytest.fixture(scope="session")
def drealsr() -> Path:
    path = BENCH / "DRealSR"
    if not path.is_dir():
        pytest.fail(f"benchmark data missing: {path}")
    return path


def small_hr_folder(drealsr: Path, out: Path, count: int, size: int) -> Path:
    """The first ``count`` DRealSR HR images resized to ``size`` px: cheap training data for tests."""
    from PIL import Image

    for p in sorted((drealsr / "HR").glob("*.png"))[:count]:
        Image.open(p).convert("RGB").resize((size, size), Image.BICUBIC).save(out / p.name)
    return out
