import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the test harness never tries the hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)  # tiny models: one thread is faster than two (no sync), and leaves a core to the rest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"  # bundled with the repository (data/samples/README.md)


def pytest_collection_modifyitems(config, items):
    """Tests marked full_data need the full benchmark sets under TVT_DATA: without it they are not collected
    (a fresh clone has only the samples); with it, a missing set fails them (CI points TVT_DATA at the sets)."""
    if os.environ.get("TVT_DATA"):
        return
    kept = [it for it in items if "full_data" not in it.keywords]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[it for it in items if "full_data" in it.keywords])
        items[:] = kept


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
    """6 bundled RealSR test pairs (HR 512, LR 128)."""
    return SAMPLES / "RealSR"


@pytest.fixture(scope="session")
def drealsr() -> Path:
    """12 bundled DRealSR HR crops (256x256): training data of the toy runs."""
    return SAMPLES / "DRealSR"


@pytest.fixture(scope="session")
def full_data() -> Path:
    """The data root holding the full RealSR / DRealSR test sets (TVT_DATA)."""
    root = Path(os.environ["TVT_DATA"])
    for name in ("RealSR", "DRealSR"):
        if not (root / name / "HR").is_dir():
            pytest.fail(f"TVT_DATA={root} has no {name}/HR: point TVT_DATA at the folder holding the test sets")
    return root


def small_hr_folder(drealsr: Path, out: Path, count: int, size: int) -> Path:
    """The first ``count`` DRealSR HR images resized to ``size`` px: cheap training data for tests."""
    from PIL import Image

    for p in sorted((drealsr / "HR").glob("*.png"))[:count]:
        Image.open(p).convert("RGB").resize((size, size), Image.BICUBIC).save(out / p.name)
    return out
