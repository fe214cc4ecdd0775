"""DIV2K-val is the paper's set (StableSR's 3,000 released pairs, Sec. 4.1); our centre-crop builder writes a set
named for what it is, and the reproduction guide never puts its numbers beside the paper's DIV2K-val."""
import importlib
import re
from pathlib import Path

import numpy as np
from PIL import Image

from tvt.data.catalog import catalog, missing_datasets, paired_dirs

ROOT = Path(__file__).resolve().parents[1]


def _img(path, w, h):
    Image.fromarray(np.random.default_rng(w * h).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


def test_catalog_div2k_val_is_stablesr_release_and_the_builder_set_is_named_apart(tmp_path):
    div2k, ours = catalog()["DIV2K-val"], catalog()["DIV2K-centre-crops"]
    assert div2k.pairs == 3000 and "StableSR" in div2k.use and "StableSR" in div2k.get
    assert "make_testset" not in div2k.get and "--div2k_hr" in ours.get and "NOT the paper" in ours.use
    assert ours.path != div2k.path and ours.optional
    assert "DIV2K-val" in missing_datasets(tmp_path) and "DIV2K-centre-crops" not in missing_datasets(tmp_path)


def test_prepare_data_links_stablesr_pairs_as_div2k_val_and_builds_centre_crops_elsewhere(tmp_path, capsys, monkeypatch):
    from tvt.data import testset

    build = testset.make_testset  # at 64 px with the tiny degradation: the same code, a fraction of the time
    monkeypatch.setattr(testset, "make_testset", lambda hr, out, size, seed: build(hr, out, size=64, seed=seed, config="tiny"))
    prepare = importlib.import_module("tvt_scripts.prepare_data")
    root, hr_only, pairs = tmp_path / "root", tmp_path / "DIV2K_valid_HR", tmp_path / "DIV2K_V2_val"
    hr_only.mkdir()
    _img(hr_only / "0801.png", 64, 48)
    # a folder of bare HR images is not StableSR's set: refused, nothing is built as DIV2K-val (the old behaviour)
    assert prepare.main([f"data_root={root}", f"div2k={hr_only}"]) == 2
    assert "StableSR" in capsys.readouterr().err and not (root / "DIV2K-val").exists()
    (pairs / "gt").mkdir(parents=True), (pairs / "lq").mkdir()
    _img(pairs / "gt" / "0000.png", 512, 512), _img(pairs / "lq" / "0000.png", 128, 128)
    assert prepare.main([f"data_root={root}", f"div2k={pairs}"]) == 0
    lr, hr, scale = paired_dirs("DIV2K-val", root)
    assert hr.resolve() == (pairs / "gt").resolve() and lr.resolve() == (pairs / "lq").resolve() and scale == 4
    assert prepare.main([f"data_root={root}", f"div2k_hr={hr_only}"]) == 0
    lr, hr, _ = paired_dirs("DIV2K-centre-crops", root)
    assert [p.name for p in hr.iterdir()] == ["0801.png"] and Image.open(lr / "0801.png").size == (16, 16)
    assert "not the paper's DIV2K-val" in capsys.readouterr().out


def test_reproduce_guide_compares_only_stablesr_div2k_val_with_the_paper():
    text = (ROOT / "docs" / "reproduce.md").read_text()
    for line in text.splitlines():
        assert not ("make_testset" in line and "DIV2K-val" in line), line  # the builder never writes DIV2K-val
        assert not re.search(r"--div2k\s+\S*DIV2K_valid_HR", line), line  # nor does prepare_data --div2k
    assert "--dataset DIV2K-val" in text and "DIV2K-centre-crops" in text
