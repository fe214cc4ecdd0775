"""The full Table 2 test sets under the data root (TVT_DATA; CI points it at them): the catalog finds them, they
are the StableSR/OSEDiff crops, and the Table 2 protocol gives the bicubic numbers measured on them."""
import pytest
from PIL import Image

from tvt.data.catalog import missing_datasets, paired_dirs
from tvt.data.datasets import PairedImageDataset
from tvt.io import list_images, pil_to_tensor, read_image

pytestmark = pytest.mark.full_data


@pytest.mark.parametrize("name, count, psnr10, ssim10", [("RealSR", 100, 26.7466, 0.7923), ("DRealSR", 93, 32.0737, 0.8991)])
def test_test_sets_and_bicubic_protocol(full_data, name, count, psnr10, ssim10):
    from tvt.metrics.registry import build_metric

    lr_dir, hr_dir, scale = paired_dirs(name, full_data)
    ds = PairedImageDataset(hr_dir, lr_dir, scale)  # names and sizes checked on construction
    assert len(ds) == count and scale == 4 and name not in missing_datasets(full_data)
    psnr, ssim = build_metric("psnr"), build_metric("ssim")
    scores = []
    for p in list_images(hr_dir)[:10]:  # bicubic x4 (PIL), Y of YCbCr: the first 10 images of the set
        hr, lr = read_image(p), read_image(lr_dir / p.name)
        assert hr.size == (512, 512) and lr.size == (128, 128)
        x, y = pil_to_tensor(lr.resize(hr.size, Image.BICUBIC))[None], pil_to_tensor(hr)[None]
        scores.append((float(psnr(x, y)), float(ssim(x, y))))
    assert abs(sum(s[0] for s in scores) / 10 - psnr10) < 1e-3 and abs(sum(s[1] for s in scores) / 10 - ssim10) < 1e-3
