import pytest
import torch

from tvt.colorfix import adain_color_fix, apply_color_fix, wavelet_color_fix, wavelet_decomposition
from tvt.errors import InputError


def _smooth(h=48, w=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, h // 8, w // 8, generator=g)
    return torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)


def test_adain_matches_reference_mean_std():
    g = torch.Generator().manual_seed(0)
    image = 0.5 + 0.08 * torch.randn(2, 3, 32, 32, generator=g)
    reference = 0.3 + 0.04 * torch.randn(2, 3, 32, 32, generator=g) + torch.tensor([0.0, 0.1, 0.2])[None, :, None, None]
    out = adain_color_fix(image, reference)
    assert out.shape == image.shape
    torch.testing.assert_close(out.mean((2, 3)), reference.mean((2, 3)), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.std((2, 3)), reference.std((2, 3)), atol=1e-4, rtol=0)
    # structure is the image's: per-channel affine map keeps the correlation at 1
    a, b = out[0, 0].flatten(), image[0, 0].flatten()
    assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.999


def test_wavelet_takes_low_frequencies_from_reference():
    ref = 0.2 + 0.5 * _smooth()
    texture = 0.05 * torch.sign(torch.randn(1, 1, 48, 40, generator=torch.Generator().manual_seed(1)))
    shifted = (ref + texture + torch.tensor([0.1, -0.05, 0.08])[None, :, None, None]).clamp(0, 1)  # colour shift
    out = wavelet_color_fix(shifted, ref)
    # the colour shift is gone: low frequencies (and the mean) are the reference's
    _, low_out = wavelet_decomposition(out)
    _, low_ref = wavelet_decomposition(ref)
    assert (low_out - low_ref).abs().mean() < 0.01
    torch.testing.assert_close(out.mean((2, 3)), ref.mean((2, 3)), atol=5e-3, rtol=0)
    # the fine texture is the image's
    high_out, _ = wavelet_decomposition(out)
    high_img, _ = wavelet_decomposition(shifted)
    assert (high_out - high_img).abs().mean() < 0.01


def test_wavelet_levels_are_dilated_binomial_blurs():
    """2 levels = the image minus its blur by [1, 2, 1]/4 (squared) at dilation 1, then 2, plus the reference's low
    frequencies: on a point of light over a flat reference, the row through it is 0.5 + 0.25 (delta - k) with
    k = [1, 2, 1]/4 * [1, 0, 2, 0, 1]/4 = [1, 2, 3, 4, 3, 2, 1]/16 in 1D, times 1/4 for the middle row (the
    official wavelet_color_fix's kernel and radii; a box blur or other radii give other numbers)."""
    image = torch.full((1, 3, 17, 17), 0.5)
    image[..., 8, 8] += 0.25
    out = wavelet_color_fix(image, torch.full_like(image, 0.5), levels=2)
    k = torch.tensor([1, 2, 3, 4, 3, 2, 1]) / 16 / 4
    expected = 0.5 - 0.25 * k
    expected[3] += 0.25
    torch.testing.assert_close(out[0, :, 8, 5:12], expected.expand(3, 7), atol=1e-6, rtol=0)
    torch.testing.assert_close(out[0, :, 8, :4], torch.full((3, 4), 0.5), atol=1e-6, rtol=0)  # beyond the kernel


def test_apply_color_fix_dispatch():
    x, r = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    assert apply_color_fix(x, r, None) is x and apply_color_fix(x, r, "none") is x
    assert torch.equal(apply_color_fix(x, r, "adain"), adain_color_fix(x, r))
    with pytest.raises(InputError, match="unknown colour fix"):
        apply_color_fix(x, r, "histogram")
    with pytest.raises(ValueError, match="equal shape"):
        adain_color_fix(x, r[..., :8])
