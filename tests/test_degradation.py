"""Real-ESRGAN degradation: shapes, per-sample determinism, effect of each op, equality with basicsr, the per-sample
transform the training data loader runs."""
import dataclasses
import pickle
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tvt._compat import import_basicsr
from tvt.config import ConfigError
from tvt.data.degradation import (
    config_path,
    DegradationConfig,
    DegradeSample,
    RealESRGANDegradation,
    SeparableUSMSharp,
    add_noise,
    draw_sample,
    filter2d,
    gaussian_noise,
    load_degradation_config,
    poisson_noise,
    random_blur_kernel,
    random_final_sinc_kernel,
    seeded_global_rng,
)

import_basicsr()
from basicsr.data.degradations import generate_gaussian_noise_pt, generate_poisson_noise_pt  # noqa: E402
from basicsr.utils.diffjpeg import DiffJPEG  # noqa: E402
from basicsr.utils.img_process_util import USMSharp, filter2D  # noqa: E402


def smooth_image(b, size, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 3, size // 6 + 1, size // 6 + 1, generator=g)  # not 8-periodic
    return F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


def hf_energy(x):
    """Mean squared Laplacian response (high-frequency energy)."""
    lap = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]).view(1, 1, 3, 3).repeat(3, 1, 1, 1)
    return F.conv2d(x, lap, groups=3).pow(2).mean().item()


def test_configs_load_and_validate():
    full, tiny = load_degradation_config("realesrgan"), load_degradation_config(config_path("tiny"))
    assert full == DegradationConfig()  # YAML == Real-ESRGAN defaults in the dataclass
    assert not full.use_usm  # as the official OSEDiff/TVT loaders
    assert tiny.blur_kernel_size == tiny.blur_kernel_size2 == 7
    assert dataclasses.replace(tiny, blur_kernel_size=21, blur_kernel_size2=21) == full
    assert load_degradation_config("tiny", ["jpeg_range=[50,60]"]).jpeg_range == [50, 60]
    with pytest.raises(ConfigError, match="jpeg_rnge"):
        load_degradation_config("tiny", ["jpeg_rnge=[50,60]"])
    with pytest.raises(ValueError, match="odd"):
        load_degradation_config("tiny", ["blur_kernel_size=8"])
    with pytest.raises(ValueError, match="resize_range2"):
        load_degradation_config("tiny", ["resize_range2=[1.2,0.3]"])


@pytest.mark.parametrize("name,size", [("tiny", 64), ("realesrgan", 128)])
def test_shapes_and_range(name, size):
    deg = RealESRGANDegradation(load_degradation_config(name, ["use_usm=true"]))
    hr = smooth_image(3, size)
    out = deg(hr, [0, 1, 2], seed=1)
    assert out["lr"].shape == (3, 3, size // 4, size // 4) and out["gt"].shape == (3, 3, size, size)
    assert out["lr"].dtype == out["gt"].dtype == torch.float32
    assert 0 <= out["lr"].min() and out["lr"].max() <= 1 and 0 <= out["gt"].min() and out["gt"].max() <= 1
    assert torch.equal(out["lr"], (out["lr"] * 255).round() / 255)  # 8-bit quantised like a saved LR
    assert not torch.equal(out["gt"], hr)  # USM-sharpened
    with pytest.raises(ValueError, match="divisible"):
        deg(torch.rand(1, 3, 66, 66), [0], 0)
    with pytest.raises(ValueError, match="too small"):
        deg(torch.rand(1, 3, 12, 12), [0], 0)
    with pytest.raises(ValueError, match="indices"):
        deg(hr, [0, 1], 0)


def test_gt_is_hr_without_usm():
    deg = RealESRGANDegradation(load_degradation_config("tiny"))
    hr = smooth_image(2, 64)
    assert torch.equal(deg(hr, [0, 1], 0)["gt"], hr)


def test_deterministic_across_batch_sizes():
    deg = RealESRGANDegradation(load_degradation_config("tiny", ["use_usm=true"]))
    hr = smooth_image(3, 64)
    batch = deg(hr, torch.tensor([3, 5, 9]), seed=7)["lr"]
    alone = deg(hr[1:2], [5], seed=7)["lr"]
    assert torch.equal(alone[0], batch[1])
    assert torch.equal(deg(hr[[2, 0]], [9, 3], seed=7)["lr"], batch[[2, 0]])  # batch order does not matter
    assert torch.equal(deg(hr, [3, 5, 9], seed=7)["lr"], batch)  # rerun
    assert not torch.equal(deg(hr, [3, 5, 9], seed=8)["lr"], batch)  # the seed matters
    # global RNGs are left untouched
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    deg(hr, [3, 5, 9], seed=7)
    assert random.random() == random.Random(0).random() and np.random.rand() == np.random.RandomState(0).rand()
    assert torch.equal(torch.rand(1), torch.rand(1, generator=torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("usm", [False, True])
def test_per_sample_transform_equals_the_batched_call(usm):
    """What the training workers make for one sample (DegradeSample) == its row of the batched call, bit for bit;
    a pickled copy (what a worker gets) gives the same."""
    cfg = load_degradation_config("tiny", [f"use_usm={str(usm).lower()}"])
    hr = smooth_image(2, 64, seed=2)
    batch = RealESRGANDegradation(cfg)(hr, [9, 4], seed=11, resize_back=True)
    transform = DegradeSample(cfg, seed=11)
    copy = pickle.loads(pickle.dumps(transform))
    for i, position in enumerate([9, 4]):
        item = {"hr": hr[i], "position": position, "path": "x.png"}
        for out in (transform(item), copy(item)):
            assert (out["path"], out["position"]) == ("x.png", position) and torch.equal(out["hr"], hr[i])
            for key in ("lr", "lr_up", "gt"):
                assert torch.equal(out[key], batch[key][i]), key
    assert DegradeSample(cfg, 11, resize_back=False)({"hr": hr[0], "position": 4}).keys() == {"hr", "position", "lr", "gt"}


def test_blur_lowers_high_frequency_energy():
    cfg = load_degradation_config("realesrgan", ["sinc_prob=0", "blur_sigma=[1,3]"])
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for s in range(5):
        with seeded_global_rng(s):
            k = torch.as_tensor(random_blur_kernel(cfg, 1), dtype=torch.float32)[None]
        assert k.shape == (1, 21, 21) and abs(k.sum().item() - 1) < 1e-5
        assert hf_energy(filter2d(x, k)) < 0.5 * hf_energy(x)


def test_noise_raises_variance_on_flat_image():
    flat = torch.full((1, 3, 64, 64), 0.5)
    for kind, amount in (("gaussian", 20.0), ("poisson", 2.0)):
        color = add_noise(flat, (kind, amount, 0.0, 1))
        gray = add_noise(flat, (kind, amount, 1.0, 1))
        assert color.var() > 1e-4 and gray.var() > 1e-4
        assert torch.equal(gray[:, 0], gray[:, 1]) and not torch.equal(color[:, 0], color[:, 1])
        assert torch.equal(add_noise(flat, (kind, amount, 0.0, 1)), color)  # seeded
        assert not torch.equal(add_noise(flat, (kind, amount, 0.0, 2)), color)


def test_jpeg_makes_8x8_block_artefacts():
    deg = RealESRGANDegradation(load_degradation_config("tiny"))
    x = smooth_image(1, 128, seed=3)
    y = deg._jpeg(x, 30.0)
    d = (y[..., :, 1:] - y[..., :, :-1]).abs().mean(dim=(0, 1, 2))  # (W-1,) column differences
    at_boundary = d[7::8].mean()  # between columns 8k-1 and 8k
    inside = torch.cat([d[i::8] for i in range(7)]).mean()
    assert at_boundary > 1.5 * inside
    x_d = (x[..., :, 1:] - x[..., :, :-1]).abs().mean(dim=(0, 1, 2))
    assert x_d[7::8].mean() < 1.2 * torch.cat([x_d[i::8] for i in range(7)]).mean()  # not in the input


def test_usm_sharpens_edges():
    x = torch.zeros(1, 3, 64, 64)
    x[..., 32:] = 0.6  # a step edge
    y = SeparableUSMSharp()(x)
    assert y[..., 31].max() == 0 and y[..., 32].min() > 0.6  # overshoot on the bright side, clipped on the dark
    assert torch.equal(y[..., :8], x[..., :8]) and torch.allclose(y[..., 60:], x[..., 60:])  # flat parts kept


# ----------------------------------------------------------------------------- equality with basicsr


def test_kernels_equal_basicsr_realesrgan_dataset(tmp_path):
    """Same global seed -> our kernel draws == basicsr RealESRGANDataset's kernel1/kernel2/sinc_kernel."""
    from basicsr.data.realesrgan_dataset import RealESRGANDataset
    from PIL import Image

    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(tmp_path / "a.png")  # < 400 px: padded, no crop draws
    (tmp_path / "meta.txt").write_text("a.png\n")
    cfg = DegradationConfig()
    opt = {k: v for k, v in dataclasses.asdict(cfg).items()}
    opt.update(dataroot_gt=str(tmp_path), meta_info=str(tmp_path / "meta.txt"), io_backend={"type": "disk"},
               use_hflip=False, use_rot=False)
    ds = RealESRGANDataset(opt)
    for s in range(12):
        random.seed(s), np.random.seed(s)
        ref = ds[0]
        with seeded_global_rng(s):
            ours = [random_blur_kernel(cfg, 1), random_blur_kernel(cfg, 2), random_final_sinc_kernel(cfg)]
        for a, key in zip(ours, ("kernel1", "kernel2", "sinc_kernel")):
            np.testing.assert_allclose(a, ref[key].double().numpy(), atol=1e-6)


def test_filter2d_equals_basicsr_and_is_batch_independent():
    x = torch.rand(3, 3, 40, 48, generator=torch.Generator().manual_seed(0))
    k = torch.stack([torch.as_tensor(draw_sample(DegradationConfig(), 0, i).kernel1, dtype=torch.float32)
                     for i in range(3)])
    assert torch.equal(filter2d(x, k), filter2D(x, k))  # per-sample kernels (basicsr's grouped path)
    torch.testing.assert_close(filter2d(x, k[:1]), filter2D(x, k[:1]), rtol=0, atol=1e-6)  # one shared kernel
    for i in range(3):
        assert torch.equal(filter2d(x, k)[i : i + 1], filter2d(x[i : i + 1], k[i : i + 1]))


@pytest.mark.parametrize("gray", [0.0, 1.0])
def test_noise_equals_basicsr_with_the_same_seed(gray):
    x = torch.rand(1, 3, 24, 40, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(5)
    ref = generate_gaussian_noise_pt(x, 12.5, gray)
    assert torch.equal(gaussian_noise(x, 12.5, gray > 0, torch.Generator().manual_seed(5)), ref)
    torch.manual_seed(5)
    ref = generate_poisson_noise_pt(x, 1.5, gray)
    assert torch.equal(poisson_noise(x, 1.5, gray > 0, torch.Generator().manual_seed(5)), ref)


def test_separable_usm_equals_basicsr_usmsharp():
    x = smooth_image(2, 96, seed=1)
    torch.testing.assert_close(SeparableUSMSharp()(x), USMSharp()(x), atol=1e-5, rtol=0)


def test_pipeline_equals_basicsr_ops_on_shared_draws():
    """Our pipeline == Real-ESRGAN feed_data's op sequence written with basicsr calls, given the same draws."""
    cfg = load_degradation_config("tiny", ["use_usm=true"])
    hr = smooth_image(2, 64, seed=5)
    usm, jpeger = USMSharp(), DiffJPEG(differentiable=False)
    deg = RealESRGANDegradation(cfg)
    deg.usm_sharpener = usm  # basicsr's 2-D USM, so the comparison can be exact
    result = deg(hr, [11, 4], seed=3, resize_back=True)
    ours = result["lr"]

    def noise(x, n):  # basicsr noise drawn from the global RNG seeded with our per-sample seed
        torch.manual_seed(n[3])
        if n[0] == "gaussian":
            return torch.clamp(x + generate_gaussian_noise_pt(x, n[1], n[2]), 0, 1)
        return torch.clamp(x + generate_poisson_noise_pt(x, n[1], gray_noise=n[2]), 0, 1)

    def k(a):
        return torch.FloatTensor(a)[None]

    for j, idx in enumerate([11, 4]):
        d = draw_sample(cfg, 3, idx)
        out = filter2D(usm(hr[j : j + 1]), k(d.kernel1))
        out = noise(F.interpolate(out, scale_factor=d.resize1[0], mode=d.resize1[1]), d.noise1)
        out = jpeger(torch.clamp(out, 0, 1), quality=d.jpeg1)
        if d.second_blur:
            out = filter2D(out, k(d.kernel2))
        out = F.interpolate(out, size=(int(16 * d.resize2[0]),) * 2, mode=d.resize2[1])
        out = noise(out, d.noise2)
        if d.sinc_first:
            out = filter2D(F.interpolate(out, size=(16, 16), mode=d.final_mode), k(d.sinc_kernel))
            out = jpeger(torch.clamp(out, 0, 1), quality=d.jpeg2)
        else:
            out = jpeger(torch.clamp(out, 0, 1), quality=d.jpeg2)
            out = filter2D(F.interpolate(out, size=(16, 16), mode=d.final_mode), k(d.sinc_kernel))
        ref = torch.clamp((out * 255.0).round(), 0, 255) / 255.0
        torch.testing.assert_close(ours[j : j + 1], ref, atol=0, rtol=0)
        # OSEDiff/TVT degrade_process(resize_bak=True): the unrounded LR back to the HR size, random mode, 8 bit
        up = F.interpolate(out, size=hr.shape[-2:], mode=d.resize_back_mode)
        torch.testing.assert_close(result["lr_up"][j : j + 1], torch.clamp((up * 255.0).round(), 0, 255) / 255.0,
                                   atol=0, rtol=0)


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_output_follows_device_and_is_batch_independent(device):
    deg = RealESRGANDegradation(load_degradation_config("tiny", ["use_usm=true"]))
    hr = smooth_image(3, 64).to(device)
    out = deg(hr, [3, 5, 9], seed=7)
    assert out["lr"].device == hr.device and out["gt"].device == hr.device
    assert torch.equal(deg(hr[1:2], [5], seed=7)["lr"][0], out["lr"][1])
    modes = {draw_sample(deg.cfg, 7, i).resize_back_mode for i in range(20)}
    assert modes == {"area", "bilinear", "bicubic"}  # drawn per sample
