"""scripts/make_testset.py: HR/LR/manifest written, rerun byte-identical."""
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from tvt.data.degradation import config_path

REPO = Path(__file__).resolve().parents[1]


def digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_make_testset_rerun_is_byte_identical(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (80, 100, 3), dtype=np.uint8)).save(src / "b.png")
    Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(src / "a.jpg")  # smaller: padded
    cmd = [sys.executable, str(REPO / "scripts" / "make_testset.py"), "--hr", str(src), "--size", "64",
           "--degradation", "tiny", "--seed", "3"]
    subprocess.run(cmd + ["--out", str(tmp_path / "o1")], check=True, capture_output=True, cwd=tmp_path)  # any folder
    from tvt.data.testset import (
        make_testset,  # the rerun in-process (saves a second interpreter start)
    )

    make_testset(src, tmp_path / "o2", size=64, seed=3, config="tiny")
    d1 = digest(tmp_path / "o1")
    assert d1 == digest(tmp_path / "o2")
    assert set(d1) == {"HR/a.png", "HR/b.png", "LR/a.png", "LR/b.png", "manifest.json"}
    assert Image.open(tmp_path / "o1" / "HR" / "b.png").size == (64, 64)
    assert Image.open(tmp_path / "o1" / "LR" / "b.png").size == (16, 16)
    m = json.loads((tmp_path / "o1" / "manifest.json").read_text())
    assert m["seed"] == 3 and [s["index"] for s in m["sources"]] == [0, 1]
    assert m["config_sha256"] == hashlib.sha256(config_path("tiny").read_bytes()).hexdigest()
