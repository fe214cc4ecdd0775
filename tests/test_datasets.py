"""HRImageDataset / PairedImageDataset: crops, determinism, awkward files."""
import logging

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from tvt.data.datasets import HRImageDataset, PairedImageDataset


def rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "hr"
    d.mkdir()
    Image.fromarray(rgb(80, 96, 1)).save(d / "a.png")
    Image.fromarray(rgb(64, 64, 2)[..., 0]).save(d / "b_gray.png")
    Image.fromarray(np.dstack([rgb(70, 70, 3), np.full((70, 70), 128, np.uint8)])).save(d / "c_rgba.png")
    Image.fromarray(rgb(72, 72, 4)[..., 0].astype(np.uint16) * 257).save(d / "d_16bit.png")
    Image.fromarray(rgb(20, 30, 5)).save(d / "e_tiny.png")
    return d


def anywhere(folder):
    """The folder as a source cropped anywhere, one sample per image (no stride windows)."""
    return [{"path": str(folder), "stride": None}]


def test_items_shapes_and_types(folder):
    ds = HRImageDataset(anywhere(folder), crop_size=48)
    assert len(ds) == 5
    for i in range(len(ds)):
        item = ds[i]
        assert item["hr"].shape == (3, 48, 48) and item["hr"].dtype == torch.float32
        assert 0 <= item["hr"].min() and item["hr"].max() <= 1
        assert item["index"] == i and item["path"].endswith(".png")
    gray = ds[1]["hr"]
    assert torch.equal(gray[0], gray[1])  # grayscale -> 3 equal channels
    assert ds[3]["hr"].max() > 0.5  # 16-bit scaled, not clipped to 1/257


def test_crops_seeded_by_seed_epoch_index(folder):
    ds = HRImageDataset(anywhere(folder), crop_size=32)
    a = ds[0]["hr"]
    assert torch.equal(a, ds[0]["hr"])
    ds.set_epoch(1)
    assert not torch.equal(a, ds[0]["hr"])
    ds.set_epoch(0)
    assert torch.equal(a, ds[0]["hr"])
    assert not torch.equal(a, HRImageDataset(anywhere(folder), crop_size=32, seed=1)[0]["hr"])
    # same crops whatever the number of workers
    one = torch.cat([b["hr"] for b in DataLoader(ds, batch_size=2, num_workers=0)])
    two = torch.cat([b["hr"] for b in DataLoader(ds, batch_size=2, num_workers=2)])
    assert torch.equal(one, two)


def test_small_images_pad_resize_or_skip(folder, caplog):
    ds = HRImageDataset(anywhere(folder), crop_size=64)
    with caplog.at_level(logging.WARNING):
        assert ds[4]["hr"].shape == (3, 64, 64)  # 20x30 reflect-padded (repeatedly)
    with caplog.at_level(logging.WARNING):
        skip = HRImageDataset(anywhere(folder), crop_size=72, small_policy="skip")
    assert [p.name for p in skip.paths] == ["a.png", "d_16bit.png"] and skip.num_small == 3
    assert sum("smaller than crop_size" in r.message for r in caplog.records) == 2  # one per dataset
    with pytest.raises(ValueError, match="small_policy"):
        HRImageDataset(folder, small_policy="crop")
    # LDM's autoencoder data rescales (SmallestMaxSize, INTER_AREA): 30x20 -> 96x64, then the crop; no padding
    resized = HRImageDataset(anywhere(folder), crop_size=64, small_policy="resize")[4]["hr"]
    padded = ds[4]["hr"]
    assert resized.shape == (3, 64, 64) and not torch.equal(resized, padded)
    import cv2

    small = np.asarray(Image.open(folder / "e_tiny.png"), dtype=np.float32) / 255
    ref = torch.from_numpy(cv2.resize(small, (96, 64), interpolation=cv2.INTER_AREA)).permute(2, 0, 1)
    assert any(torch.allclose(resized, ref[:, :, x : x + 64], atol=1e-6) for x in range(33))


def test_unreadable_files_are_skipped_with_a_warning(folder, tmp_path, caplog):
    data = (folder / "a.png").read_bytes()
    (folder / "f_truncated.png").write_bytes(data[: len(data) // 3])
    (folder / "g_not_an_image.jpg").write_text("hello")
    lst = tmp_path / "list.txt"
    lst.write_text("hr/f_truncated.png\nhr/g_not_an_image.jpg\nhr/a.png\n")
    ds = HRImageDataset([{"path": str(lst), "stride": None}], crop_size=32)
    with caplog.at_level(logging.WARNING):
        items = [ds[i] for i in range(len(ds))]
    assert all(it["path"].endswith("a.png") for it in items)
    assert "f_truncated.png" in caplog.text and "g_not_an_image.jpg" in caplog.text
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="no images"):
        HRImageDataset(tmp_path / "empty.txt")


def test_paired_dataset(tmp_path):
    (tmp_path / "HR").mkdir(), (tmp_path / "LR").mkdir()
    Image.fromarray(rgb(64, 64)).save(tmp_path / "HR" / "x.png")
    Image.fromarray(rgb(16, 16)).save(tmp_path / "LR" / "x.png")
    ds = PairedImageDataset(tmp_path / "HR", tmp_path / "LR")
    it = ds[0]
    assert it["hr"].shape == (3, 64, 64) and it["lr"].shape == (3, 16, 16) and it["name"] == "x"
    Image.fromarray(rgb(16, 16)).save(tmp_path / "LR" / "y.png")
    with pytest.raises(ValueError, match="y"):
        PairedImageDataset(tmp_path / "HR", tmp_path / "LR")
    Image.fromarray(rgb(60, 64)).save(tmp_path / "HR" / "y.png")
    with pytest.raises(ValueError, match="y: HR 64x60"):
        PairedImageDataset(tmp_path / "HR", tmp_path / "LR")


def test_paired_dataset_on_realsr(realsr):
    ds = PairedImageDataset(realsr / "HR", realsr / "LR")
    it = ds[0]
    assert it["hr"].shape[-2:] == (it["lr"].shape[-2] * 4, it["lr"].shape[-1] * 4)
