"""The official data mix (TVT README, "Prepare training data"): every window of crop_size at stride 64 is one
sample, FFHQ faces resized whole are one sample each; shares on folders of known image sizes."""
import logging
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from tvt.config import ConfigError, load_config
from tvt.data.datasets import HRImageDataset
from tvt.data.mix import Source, SourceMix, parse_sources
from tvt.roots import data_root


def position_image(path, w, h):
    """R = column, G = row (mod 256): a crop's first pixel says where it was cut."""
    x, y = np.meshgrid(np.arange(w), np.arange(h))
    Image.fromarray(np.dstack([x % 256, y % 256, np.zeros_like(x)]).astype(np.uint8)).save(path)


@pytest.fixture
def mix_folders(tmp_path):
    """A stand-in for LSDIR and FFHQ at 1/8 scale (crop 64, stride 8 = the official 512 and 64):
    lsdir 80x72 -> 3 x 2 windows, 128x64 -> 9 x 1, 62x87 -> none (narrower than the crop); ffhq two faces."""
    lsdir, ffhq = tmp_path / "lsdir", tmp_path / "ffhq"
    lsdir.mkdir(), ffhq.mkdir()
    for name, (w, h) in {"a": (80, 72), "b": (128, 64), "c": (62, 87)}.items():
        position_image(lsdir / f"{name}.png", w, h)
    for name in ("f1", "f2"):
        position_image(ffhq / f"{name}.png", 96, 96)
    return lsdir, ffhq


def _epoch(ds, epoch=0):
    ds.set_epoch(epoch)
    out = []
    for i in range(len(ds)):
        item = ds[i]
        hr = (item["hr"] * 255).round().int()
        out.append((item["path"].rsplit("/", 1)[-1], int(hr[1, 0, 0]), int(hr[0, 0, 0])))  # (file, top, left)
    return out


def test_an_epoch_is_every_stride_window_once_and_every_resized_face_once(mix_folders, caplog):
    lsdir, ffhq = mix_folders
    with caplog.at_level(logging.WARNING):
        ds = HRImageDataset([{"path": str(lsdir), "stride": 8}, {"path": str(ffhq), "resize": True}], crop_size=64)
    assert "1 images smaller than crop_size=64" in caplog.text  # c.png: no window, as pre-cutting would leave it
    windows = {("a.png", 8 * r, 8 * c) for r in range(2) for c in range(3)} | {("b.png", 0, 8 * c) for c in range(9)}
    epoch = _epoch(ds)
    assert len(ds) == 17 and Counter(f for f, _, _ in epoch) == {"a.png": 6, "b.png": 9, "f1.png": 1, "f2.png": 1}
    assert {e for e in epoch if e[0] in ("a.png", "b.png")} == windows  # the exact pre-cut windows, each once
    assert ds.mix.shares() == {str(lsdir): 15 / 17, str(ffhq): 2 / 17}
    assert sorted(_epoch(ds, 1)) == sorted(epoch)  # the next epoch: the same samples


def test_weights_scale_a_source_and_walk_through_all_its_windows(mix_folders):
    lsdir, ffhq = mix_folders
    ds = HRImageDataset([{"path": str(lsdir), "stride": 8, "weight": 0.5}, {"path": str(ffhq), "resize": True,
                                                                         "weight": 2}], crop_size=64)
    assert list(ds.mix.samples) == [8, 4] and ds.mix.shares()[str(ffhq)] == 4 / 12  # round(7.5) = 8
    seen = {e for ep in (0, 1) for e in _epoch(ds, ep) if e[0] != "f1.png" and e[0] != "f2.png"}
    assert len(seen) == 15  # two half epochs cover every window


def test_official_shares_on_known_sizes_default_stride_64():
    """At the official scale: a bare path takes stride-64 windows of 512 (sizes from the file list)."""
    mix = SourceMix(parse_sources(["lsdir.txt", {"path": "ffhq.txt", "resize": True}]), 512,
                    listings={0: [("x.png", (2040, 1356)), ("y.png", (512, 512)), ("z.png", (480, 640))],
                              1: [(f"{i}.png", (1024, 1024)) for i in range(10)]})
    assert list(mix.items) == [24 * 14 + 1, 10]  # (2040-512)//64+1 = 24 by (1356-512)//64+1 = 14, plus one
    assert mix.shares()["ffhq.txt"] == pytest.approx(10 / 347)
    assert "lsdir.txt: 2 images, 337 windows at stride 64" in mix.describe()


def test_file_lists_carry_sizes_and_bad_entries_are_config_errors(mix_folders, tmp_path):
    lsdir, _ = mix_folders
    lst = tmp_path / "list.txt"
    lst.write_text("lsdir/a.png\t80\t72\nlsdir/b.png\n")  # a size, or the header is read
    ds = HRImageDataset([{"path": str(lst), "stride": 8}], crop_size=64)
    assert list(ds.mix.items) == [15]
    for bad in ({"stride": 8}, {"path": "x", "strid": 8}, {"path": "x", "weight": 0}, 3):
        with pytest.raises(ConfigError):
            parse_sources([bad])


def test_paper_configs_take_the_official_mix(monkeypatch, tmp_path):
    from tvt.train.isr import ISRConfig
    from tvt.train.vae_transfer import VAETransferConfig

    root = data_root()
    isr = load_config(ISRConfig, ["--config", "configs/isr.yaml"]).data.sources
    assert parse_sources(isr) == [Source(f"{root}/lists/lsdir.txt", stride=64), Source(f"{root}/lists/ffhq10k.txt", resize=True)]
    vae = load_config(VAETransferConfig, ["--config", "configs/vae_stage1.yaml"]).data.sources
    assert parse_sources(vae) == [Source(f"{root}/lists/openimage.txt", stride=None), Source(f"{root}/lists/lsdir.txt", stride=64)]


def test_vae_stages_follow_ldm_data_no_flips_no_transposes_small_images_rescaled(mix_folders):
    """LDM's autoencoder data (ldm/data/imagenet.py ImageNetSR, kl-f8's ImageNetSRTrain): crop + rescale only."""
    from tvt.train.vae_transfer import VAETransferConfig, _hr_dataset

    lsdir, _ = mix_folders
    for name in ("vae_stage1", "vae_stage2", "ablations/vae_t1", "ablations/vae_t2"):
        cfg = load_config(VAETransferConfig, ["--config", f"configs/{name}.yaml", "data.crop_size=64",
                                              f"data.sources=[{{path: {lsdir}, stride: null}}]"])
        ds = _hr_dataset(cfg.data, seed=0)
        assert (ds.use_flip, ds.use_rot, ds.small_policy) == (False, False, "resize"), name
    for epoch in range(8):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            hr = (ds[i]["hr"] * 255).round()
            if ds[i]["path"].endswith("c.png"):  # 62x87 rescaled to 64x90: positions no longer exact
                continue
            assert hr[0, 0, 1] == hr[0, 0, 0] + 1 and hr[1, 1, 0] == hr[1, 0, 0] + 1  # upright, not mirrored


def test_a_run_logs_each_source_share_when_it_starts(mix_folders, tmp_path, caplog):
    from tvt.train.trainer import Trainer
    from tvt.train.vae_transfer import VAETransferConfig, VAETransferStage

    lsdir, ffhq = mix_folders
    cfg = load_config(VAETransferConfig, [
        "mode=scratch", "variant=d8", "data.crop_size=64", "loss.lpips_weight=0.0", "loss.disc_weight=0.0",
        f"data.sources=[{{path: {lsdir}, stride: 8}}, {{path: {ffhq}, resize: true}}]", "train.batch_size=1",
        "train.max_steps=1", "train.grad_accum=1", f"train.output_dir={tmp_path}", "train.tracker=none",
        "train.export=false", "vae_kwargs={block_out_channels: [8, 8, 8, 8], norm_num_groups: 4, layers_per_block: 1}"])
    caplog.set_level(logging.INFO, logger="tvt.train")
    Trainer(VAETransferStage(cfg)).fit()
    assert "training data: 17 samples per epoch of 64 px" in caplog.text
    assert f" 88.24%  {lsdir}: 2 images, 15 windows at stride 8" in caplog.text
    assert f" 11.76%  {ffhq}: 2 images, resized whole" in caplog.text


def test_prepare_data_lists_lsdir_with_sizes_so_a_run_counts_windows_without_opening_images(mix_folders, tmp_path):
    import importlib

    lsdir, ffhq = mix_folders
    prepare = importlib.import_module("tvt_scripts.prepare_data")
    assert prepare.main([f"data_root={tmp_path}", f"lsdir={lsdir}", f"ffhq={ffhq}"]) == 0
    assert (tmp_path / "lists" / "lsdir.txt").read_text().splitlines() == [
        f"{lsdir}/a.png\t80\t72", f"{lsdir}/b.png\t128\t64", f"{lsdir}/c.png\t62\t87"]
    assert (tmp_path / "lists" / "ffhq10k.txt").read_text().splitlines() == [f"{ffhq}/f1.png", f"{ffhq}/f2.png"]
