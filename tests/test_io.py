"""tvt.io: every image a user can hand us becomes (3, H, W) in [0, 1] or one clear line; writes are atomic."""
import logging
import os
import stat

import numpy as np
import pytest
import torch
from PIL import Image

from tvt.errors import InputError, TVTError
from tvt.io import (ImageReadError, atomic_dir, format_images, image_to_tensor, read_image, save_image,
                    to_image_tensors, to_unit_range)


def _one_line_error(excinfo, *words):
    msg = str(excinfo.value)
    assert isinstance(excinfo.value, TVTError) and "\n" not in msg and all(w in msg for w in words), msg


def test_truncated_png_is_a_clear_error(tmp_path):
    Image.fromarray((np.random.rand(40, 40, 3) * 255).astype(np.uint8)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError) as e:
        read_image(tmp_path / "cut.png")
    _one_line_error(e, "cut.png", "truncated")


def test_non_image_named_png_is_a_clear_error(tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ImageReadError) as e:
        image_to_tensor(tmp_path / "notes.png")
    _one_line_error(e, "notes.png", "cannot read image")


def test_16_bit_is_16_bit_whatever_its_largest_value(tmp_path):
    """A 16-bit grayscale PNG whose values stay below 256 is nearly black, not 257x brighter."""
    values = np.array([[0, 100, 255], [1000, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "dark16.png")
    assert Image.open(tmp_path / "dark16.png").mode == "I;16"
    x = image_to_tensor(tmp_path / "dark16.png")
    expected = torch.from_numpy(np.round(values / 65535 * 255) / 255).float()
    assert x.shape == (3, 2, 3) and torch.equal(x[0], expected) and torch.equal(x[0], x[2])
    assert x[0, 0, 2] == 1 / 255  # 255 of 65535, not white
    torch.testing.assert_close(image_to_tensor(values)[0], torch.from_numpy(values / 65535).float())  # arrays alike


def test_float_tiff_reads_in_unit_range_and_refuses_other_ranges(tmp_path):
    ramp = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    Image.fromarray(ramp).save(tmp_path / "ramp.tif")
    assert Image.open(tmp_path / "ramp.tif").mode == "F"
    x = image_to_tensor(tmp_path / "ramp.tif")
    torch.testing.assert_close(x[1], torch.from_numpy(np.round(ramp * 255) / 255).float())
    assert x.max() == 1 and x.min() == 0  # not silently black
    Image.fromarray(ramp * 1000).save(tmp_path / "hdr.tif")
    with pytest.raises(ImageReadError) as e:
        read_image(tmp_path / "hdr.tif")
    _one_line_error(e, "hdr.tif", "[0, 1]", "1000")
    with pytest.raises(ImageReadError, match=r"\[0, 1\]"):
        image_to_tensor(ramp - 0.5)  # float arrays follow the same rule


def test_rgba_drops_alpha_and_says_so(tmp_path, caplog):
    rgba = np.zeros((4, 5, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 0  # fully transparent red: the colour is kept as it is
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    with caplog.at_level(logging.INFO, logger="tvt.io"):
        x = image_to_tensor(tmp_path / "a.png")
        y = image_to_tensor(torch.from_numpy(rgba).permute(2, 0, 1).float() / 255)
    assert torch.allclose(x[0], torch.tensor(200 / 255)) and x.shape == (3, 4, 5) and torch.equal(x, y)
    assert "a.png: RGBA image, alpha dropped" in caplog.text and "4-channel image: alpha dropped" in caplog.text


def test_inputs_of_every_kind(tmp_path):
    arr = (np.random.rand(6, 7, 3) * 255).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "x.png")
    ref = torch.from_numpy(arr).permute(2, 0, 1).float() / 255
    for item in (tmp_path / "x.png", str(tmp_path / "x.png"), Image.fromarray(arr), arr, ref, Image.fromarray(arr[..., 0])):
        t = image_to_tensor(item)
        assert t.shape == (3, 6, 7) and t.dtype == torch.float32
        torch.testing.assert_close(t, ref if not isinstance(item, Image.Image) or item.mode == "RGB" else ref[:1].expand(3, -1, -1))
    assert len(to_image_tensors(torch.rand(2, 3, 5, 5))) == 2 and len(to_image_tensors([arr, ref])) == 2
    with pytest.raises(InputError, match="1, 3 or 4 channels"):
        image_to_tensor(torch.rand(2, 5, 5))
    with pytest.raises(InputError, match="unsupported image type"):
        image_to_tensor(3)
    with pytest.raises(InputError, match="output_type"):
        format_images([ref], "jpeg")
    assert to_unit_range(np.array([70000], dtype=np.int32))[0] == 1  # 32-bit "I" images: read as 16-bit, clipped


def test_no_half_written_output(tmp_path, monkeypatch):
    """A write that fails half way leaves neither the target nor a temp file; an existing target is kept."""
    out = tmp_path / "sr.png"
    save_image(torch.zeros(3, 4, 4), out)
    before = out.read_bytes()

    def broken_save(self, fp, *args, **kwargs):
        open(fp, "wb").write(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_image(torch.ones(3, 4, 4), out)
    with pytest.raises(OSError, match="disk full"):
        save_image(torch.ones(3, 4, 4), tmp_path / "new.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sr.png"] and out.read_bytes() == before


def test_atomic_dir_replaces_whole_folders_with_normal_permissions(tmp_path):
    target = tmp_path / "export"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("1")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o777 & ~umask
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "b.txt").write_text("2")
            raise RuntimeError("crash while writing")
    assert [p.name for p in target.iterdir()] == ["a.txt"]  # the old folder, untouched
    with atomic_dir(target) as tmp:
        (tmp / "c.txt").write_text("3")
    assert [p.name for p in target.iterdir()] == ["c.txt"] and [p.name for p in tmp_path.iterdir()] == ["export"]


# ---------------------------------------------------------------------------------------------
# Reading: EXIF orientation, declared size, float TIFFs; permissions of what is written
# ---------------------------------------------------------------------------------------------
def camera_jpeg(path, width=192, height=128, orientation=6):
    """A JPEG stored ``width`` x ``height`` with a red block at its stored top-left and the EXIF Orientation tag a
    camera writes when it was held upright (6: the viewer turns it 90 degrees clockwise)."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[:32, :32] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    return path


def test_exif_orientation_is_applied_when_reading(tmp_path):
    from tvt.io import image_size

    path = camera_jpeg(tmp_path / "camera.jpg")
    assert Image.open(path).size == (192, 128)  # as stored
    img = read_image(path)
    assert img.size == (128, 192) and image_size(path) == (128, 192)  # upright: portrait
    red = np.asarray(img)[:32, -32:].mean(axis=(0, 1))
    assert red[0] > 200 and red[1] < 40  # the stored top-left is now the top-right (turned clockwise)
    assert image_to_tensor(path).shape == (3, 192, 128)


def png_declaring(path, width, height):
    """A valid 1-bit black PNG of width x height: a few hundred KB on disk that declares width x height pixels."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = (b"\0" * (1 + (width + 7) // 8)) * height  # filter byte + packed bits, per row
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))
    return path


def test_declared_pixel_count_is_refused_before_decoding(tmp_path, monkeypatch):
    from PIL import ImageFile

    path = png_declaring(tmp_path / "bomb.png", 10000, 10000)
    assert path.stat().st_size < 100_000

    def decode(self, *args, **kwargs):
        raise AssertionError("decoded before its size was checked")

    monkeypatch.setattr(ImageFile.ImageFile, "load", decode)
    with pytest.raises(ImageReadError) as e:
        image_to_tensor(path)
    _one_line_error(e, "bomb.png", "10000x10000", "100.0 MP", "limit")


def test_float32_rgb_tiff_is_read(tmp_path):
    import tifffile

    pixels = np.random.default_rng(0).random((5, 7, 3), dtype=np.float32)
    tifffile.imwrite(tmp_path / "float.tif", pixels)
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(pixels, -1, 0), planarconfig="separate", photometric="rgb")
    expected = torch.from_numpy(np.round(pixels * 255) / 255).permute(2, 0, 1).float()
    for name in ("float.tif", "planar.tif"):
        torch.testing.assert_close(image_to_tensor(tmp_path / name), expected)
    tifffile.imwrite(tmp_path / "hdr.tif", pixels * 1000)
    with pytest.raises(ImageReadError) as e:
        read_image(tmp_path / "hdr.tif")
    _one_line_error(e, "hdr.tif", "[0, 1]")


def test_safetensors_written_in_atomic_folders_are_readable_by_all(tmp_path):
    """The safetensors library creates its files 0600; a folder written atomically holds them as a plain write
    would (0644 under the usual umask), subfolders included."""
    from safetensors.torch import save_file

    with atomic_dir(tmp_path / "export") as tmp:
        (tmp / "sub").mkdir()
        save_file({"w": torch.zeros(2)}, str(tmp / "sub" / "w.safetensors"))
        assert stat.S_IMODE((tmp / "sub" / "w.safetensors").stat().st_mode) == 0o600  # what the library does
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "export" / "sub" / "w.safetensors").stat().st_mode) == 0o666 & ~umask


def test_datasets_read_camera_photos_upright(tmp_path):
    """A pair whose HR is a camera JPEG stored landscape with Orientation=6: the dataset checks and returns it
    upright, so it pairs with its upright LR."""
    from tvt.data.datasets import PairedImageDataset

    (tmp_path / "HR").mkdir()
    (tmp_path / "LR").mkdir()
    camera_jpeg(tmp_path / "HR" / "photo.jpg", width=192, height=128)
    Image.new("RGB", (32, 48)).save(tmp_path / "LR" / "photo.png")  # upright LR: 32 wide, 48 high
    item = PairedImageDataset(tmp_path / "HR", tmp_path / "LR", scale=4)[0]
    assert item["hr"].shape == (3, 192, 128) and item["lr"].shape == (3, 48, 32)
