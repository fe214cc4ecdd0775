"""The metric registry reproduces pyiqa with the Table 2 protocol (Y of YCbCr BT.601, no crop); reports render."""
import time

import pytest
import torch
from PIL import Image

import pyiqa
from tvt.errors import InputError
from tvt.io import list_images, pil_to_tensor, read_image
from tvt.metrics import MetricUnavailable, build_metric, get_spec, lower_better
from tvt.metrics.tables import crop_figure, table_markdown

PYIQA_OPTIONS = {"psnr": dict(test_y_channel=True, color_space="ycbcr"),
                 "ssim": dict(test_y_channel=True, color_space="ycbcr"), "fsim": {}}


def _random_pair(size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, size, size, generator=g)
    return x, (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)


def _realsr_pairs(realsr, n=2):
    """(bicubic x4 of LR, HR) for the first n RealSR images, central 128x128, as (1, 3, 128, 128) in [0, 1]."""
    pairs = []
    for hr_path in list_images(realsr / "HR")[:n]:
        hr = read_image(hr_path)
        lr = read_image(realsr / "LR" / hr_path.name).resize(hr.size, Image.BICUBIC)
        box = (192, 192, 320, 320)  # keeps the test fast; the protocol has no crop
        pairs.append((pil_to_tensor(lr.crop(box))[None], pil_to_tensor(hr.crop(box))[None]))
    return pairs


def _y_bt601(x: torch.Tensor) -> torch.Tensor:
    """Hand-written BT.601 luma for RGB in [0, 1] -> Y in [16/255, 235/255], float64. (B, 3, H, W) -> (B, H, W)."""
    x = x.double()
    return (16 + 65.481 * x[:, 0] + 128.553 * x[:, 1] + 24.966 * x[:, 2]) / 255


@pytest.mark.parametrize("name", ["psnr", "ssim", "fsim"])
def test_matches_pyiqa_with_protocol_options(name, realsr):
    ours = build_metric(name)
    ref = pyiqa.create_metric(name, device="cpu", **PYIQA_OPTIONS[name])
    assert get_spec(name).options == PYIQA_OPTIONS[name]
    for x, y in [_random_pair(), *_realsr_pairs(realsr)]:
        assert float(ours(x, y)) == pytest.approx(float(ref(x, y)), abs=1e-4)


def test_psnr_is_on_bt601_y(realsr):
    psnr = build_metric("psnr")
    for x, y in [_random_pair(), *_realsr_pairs(realsr)]:
        mse = ((_y_bt601(x) - _y_bt601(y)) ** 2).mean()
        assert float(psnr(x, y)) == pytest.approx(float(10 * torch.log10(1 / mse)), abs=1e-4)
    # the two pitfalls REFERENCE.md names: RGB default and YIQ (test_y_channel alone) give other numbers
    x, y = _realsr_pairs(realsr, 1)[0]
    ours = float(psnr(x, y))
    assert abs(float(pyiqa.create_metric("psnr")(x, y)) - ours) > 0.3
    assert abs(float(pyiqa.create_metric("psnr", test_y_channel=True)(x, y)) - ours) > 0.01


def test_ssim_is_on_bt601_y():
    """pyiqa SSIM on Y (rounded to 8 bit, as it does) == its RGB SSIM of the hand-made Y replicated to 3 channels."""
    x, y = _random_pair(seed=1)
    y8 = lambda t: ((_y_bt601(t) * 255).round() / 255).float()[:, None].repeat(1, 3, 1, 1)  # noqa: E731
    assert float(build_metric("ssim")(x, y)) == pytest.approx(float(pyiqa.create_metric("ssim")(y8(x), y8(y))), abs=1e-4)


def test_unavailable_metric_fails_fast_with_reason():
    t0 = time.time()
    with pytest.raises(MetricUnavailable) as err:
        build_metric("lpips")
    assert time.time() - t0 < 20
    reason = str(err.value)
    assert "alexnet" in reason and "\n" not in reason
    with pytest.raises(InputError, match="unknown metric 'psnrr'"):
        get_spec("psnrr")


def test_directions():
    assert not lower_better("psnr") and not lower_better("musiq")
    assert lower_better("lpips") and lower_better("niqe") and lower_better("fid")


def test_table_markdown_marks_best_and_second():
    summaries = {
        "A": {"psnr": 25.0, "lpips": 0.30, "lower_better": {"psnr": False, "lpips": True}},
        "B": {"psnr": 26.0, "lpips": 0.20},
        "C": {"psnr": 24.0, "lpips": 0.25},
        "D": {"psnr": 23.0, "unavailable": {"lpips": "weights absent"}},
    }
    table = table_markdown(summaries)
    lines = table.splitlines()
    assert lines[0] == "| Method | PSNR↑ | LPIPS↓ |"
    assert lines[2] == "| A | <u>25.00</u> | 0.3000 |"
    assert lines[3] == "| B | **26.00** | **0.2000** |"
    assert lines[4] == "| C | 24.00 | <u>0.2500</u> |"
    assert lines[5] == "| D | 23.00 | n/a |"


def test_crop_figure(tmp_path):
    dirs = {}
    for label, size in [("lr", 32), ("sr", 128), ("hr", 128)]:
        (tmp_path / label).mkdir()
        Image.new("RGB", (size, size), (size, 0, 0)).save(tmp_path / label / "img1.png")
        dirs[label] = tmp_path / label
    out = crop_figure([("img1", (32, 32, 64, 32))], dirs, tmp_path / "fig.png", tile=100)
    fig = Image.open(out)
    assert fig.width == 3 * 104 + 4 and fig.height > 50
    assert fig.getpixel((4 + 50, 4 + 18 + 25)) == (32, 0, 0)  # LR crop taken at the scaled box, zoomed
    with pytest.raises(FileNotFoundError, match="img2"):
        crop_figure([("img2", (0, 0, 8, 8))], dirs, tmp_path / "fig2.png")


def test_psnr_y_on_tensors_equals_pyiqa(realsr):
    from tvt.metrics.image import psnr_y

    pairs = [_random_pair(), *_realsr_pairs(realsr)]
    pyiqa_psnr = build_metric("psnr")
    for x, y in pairs:
        assert abs(float(psnr_y(x, y)) - float(pyiqa_psnr(x, y))) < 1e-3
    with pytest.raises(ValueError, match="one shape"):
        psnr_y(pairs[0][0], pairs[0][1][..., :8])
