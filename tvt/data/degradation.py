"""Real-ESRGAN second-order degradation (Wang et al. 2021), used by TVT/OSEDiff to synthesise LR training inputs.

    cfg = load_degradation_config("realesrgan", ["jpeg_range=[50, 95]"])
    out = RealESRGANDegradation(cfg)(hr, indices, seed)   # hr (B,3,H,W) in [0,1] -> out["lr"] (B,3,H/4,W/4)

The pipeline and every probability/range mirror Real-ESRGAN's ``realesrgan_dataset.py`` + ``RealESRGANModel.feed_data``
(option names kept). One difference on purpose: Real-ESRGAN draws one resize scale / noise type per *batch* from the
global RNG; here every random draw of sample i comes from generators seeded by (seed, index), so a sample's LR does
not depend on batch size, batch composition or worker count. Hence the resize scales differ per sample and the
stages between the first resize and the final resize run per sample (batched again for USM, blur-1 and rounding).
"""
from __future__ import annotations

import math
import random
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from tvt._compat import patch_basicsr_import
from tvt.config import load_config

patch_basicsr_import()
from basicsr.data.degradations import (
    circular_lowpass_kernel,
    generate_gaussian_noise_pt,
    generate_poisson_noise_pt,
    random_mixed_kernels,
)
from basicsr.utils.diffjpeg import DiffJPEG
from basicsr.utils.img_process_util import USMSharp, filter2D

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "degradation"
KERNEL_LIST = ["iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso"]
KERNEL_PROB = [0.45, 0.25, 0.12, 0.03, 0.12, 0.03]
RESIZE_MODES = ["area", "bilinear", "bicubic"]


# ----------------------------------------------------------------------------- config


@dataclass
class DegradationConfig:
    """Real-ESRGAN ``options/train_realesrgan_x4plus.yml`` degradation block (same names, same defaults)."""

    scale: int = 4
    # first stage: blur kernel (kernel sizes are drawn from the odd sizes 7..blur_kernel_size, zero-padded to it)
    blur_kernel_size: int = 21
    kernel_list: list[str] = field(default_factory=lambda: list(KERNEL_LIST))
    kernel_prob: list[float] = field(default_factory=lambda: list(KERNEL_PROB))
    sinc_prob: float = 0.1
    blur_sigma: list[float] = field(default_factory=lambda: [0.2, 3.0])
    betag_range: list[float] = field(default_factory=lambda: [0.5, 4.0])
    betap_range: list[float] = field(default_factory=lambda: [1.0, 2.0])
    # first stage: resize [up, down, keep], noise, JPEG
    resize_prob: list[float] = field(default_factory=lambda: [0.2, 0.7, 0.1])
    resize_range: list[float] = field(default_factory=lambda: [0.15, 1.5])
    gaussian_noise_prob: float = 0.5
    noise_range: list[float] = field(default_factory=lambda: [1.0, 30.0])
    poisson_scale_range: list[float] = field(default_factory=lambda: [0.05, 3.0])
    gray_noise_prob: float = 0.4
    jpeg_range: list[float] = field(default_factory=lambda: [30.0, 95.0])
    # second stage
    second_blur_prob: float = 0.8
    blur_kernel_size2: int = 21
    kernel_list2: list[str] = field(default_factory=lambda: list(KERNEL_LIST))
    kernel_prob2: list[float] = field(default_factory=lambda: list(KERNEL_PROB))
    sinc_prob2: float = 0.1
    blur_sigma2: list[float] = field(default_factory=lambda: [0.2, 1.5])
    betag_range2: list[float] = field(default_factory=lambda: [0.5, 4.0])
    betap_range2: list[float] = field(default_factory=lambda: [1.0, 2.0])
    resize_prob2: list[float] = field(default_factory=lambda: [0.3, 0.4, 0.3])
    resize_range2: list[float] = field(default_factory=lambda: [0.3, 1.2])
    gaussian_noise_prob2: float = 0.5
    noise_range2: list[float] = field(default_factory=lambda: [1.0, 25.0])
    poisson_scale_range2: list[float] = field(default_factory=lambda: [0.05, 2.5])
    gray_noise_prob2: float = 0.4
    jpeg_range2: list[float] = field(default_factory=lambda: [30.0, 95.0])
    # final sinc filter (applied with the final resize, before or after the last JPEG)
    final_sinc_prob: float = 0.8
    # USM-sharpen the GT; Real-ESRGAN degrades the sharpened GT and trains against it
    use_usm: bool = True

    def __post_init__(self) -> None:
        for name in ("blur_kernel_size", "blur_kernel_size2"):
            k = getattr(self, name)
            if k < 3 or k % 2 == 0:
                raise ValueError(f"{name} must be an odd number >= 3, got {k}")
        for lst, prob in (("kernel_list", "kernel_prob"), ("kernel_list2", "kernel_prob2")):
            if len(getattr(self, lst)) != len(getattr(self, prob)):
                raise ValueError(f"{lst} and {prob} must have the same length")
            bad = set(getattr(self, lst)) - set(KERNEL_LIST)
            if bad:
                raise ValueError(f"{lst}: unknown kernel types {sorted(bad)}; known: {KERNEL_LIST}")
        for name in ("resize_prob", "resize_prob2"):
            if len(getattr(self, name)) != 3:
                raise ValueError(f"{name} must be [up, down, keep] probabilities")


def load_degradation_config(path_or_name: str | Path = "realesrgan", overrides: Sequence[str] = ()) -> DegradationConfig:
    """A YAML path, or a name under configs/degradation/ ("realesrgan", "tiny"), plus ``key=value`` overrides."""
    path = Path(path_or_name)
    if not path.is_file() and (CONFIG_DIR / f"{path_or_name}.yaml").is_file():
        path = CONFIG_DIR / f"{path_or_name}.yaml"
    return load_config(DegradationConfig, path, overrides)  # __post_init__ validates the merged values


# ----------------------------------------------------------------------------- per-sample random draws


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The generator every draw of sample ``index`` comes from (independent of batch size and workers)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index) & 0xFFFFFFFF])


@contextmanager
def seeded_global_rng(seed: int):
    """Seed Python ``random`` + ``np.random`` for the block, then restore them.

    basicsr's kernel samplers draw from these global RNGs; forking them keeps our draws per-sample and lets us
    call basicsr unchanged (so kernels equal basicsr's for the same seed).
    """
    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def kernel_sizes(max_size: int) -> list[int]:
    """Real-ESRGAN draws kernel sizes from the odd numbers 7..21; we use 7..max_size (or max_size if < 7)."""
    return [2 * v + 1 for v in range(3, max_size // 2 + 1)] or [max_size]


def random_blur_kernel(cfg: DegradationConfig, stage: int) -> np.ndarray:
    """One blur kernel (stage 1 or 2), drawn from the *global* RNGs exactly as RealESRGANDataset.__getitem__.

    Returns (K, K) float64, K = blur_kernel_size[2], summing to 1.
    """
    s = "" if stage == 1 else "2"
    size_max = getattr(cfg, f"blur_kernel_size{s}")
    kernel_size = random.choice(kernel_sizes(size_max))
    if np.random.uniform() < getattr(cfg, f"sinc_prob{s}"):
        # this sinc cutoff range is Real-ESRGAN's setting for kernel sizes 7..21
        omega_c = np.random.uniform(np.pi / 3, np.pi) if kernel_size < 13 else np.random.uniform(np.pi / 5, np.pi)
        kernel = circular_lowpass_kernel(omega_c, kernel_size, pad_to=False)
    else:
        sigma = getattr(cfg, f"blur_sigma{s}")
        kernel = random_mixed_kernels(
            getattr(cfg, f"kernel_list{s}"),
            getattr(cfg, f"kernel_prob{s}"),
            kernel_size,
            sigma,
            sigma,
            [-math.pi, math.pi],
            getattr(cfg, f"betag_range{s}"),
            getattr(cfg, f"betap_range{s}"),
            noise_range=None,
        )
    pad = (size_max - kernel_size) // 2
    return np.pad(kernel, ((pad, pad), (pad, pad)))


def random_final_sinc_kernel(cfg: DegradationConfig) -> np.ndarray:
    """The final sinc kernel (or an identity pulse), drawn from the global RNGs as in RealESRGANDataset."""
    size_max = cfg.blur_kernel_size
    if np.random.uniform() < cfg.final_sinc_prob:
        kernel_size = random.choice(kernel_sizes(size_max))
        omega_c = np.random.uniform(np.pi / 3, np.pi)
        return circular_lowpass_kernel(omega_c, kernel_size, pad_to=size_max)
    pulse = np.zeros((size_max, size_max))
    pulse[size_max // 2, size_max // 2] = 1.0
    return pulse


@dataclass
class SampleDraws:
    """Every random choice for one sample (kernels + scalars + seeds for the noise tensors)."""

    kernel1: np.ndarray
    kernel2: np.ndarray
    sinc_kernel: np.ndarray
    resize1: tuple[float, str]  # (scale, mode)
    noise1: tuple[str, float, float, int]  # (gaussian|poisson, sigma-or-scale, gray 0/1, torch seed)
    jpeg1: float
    second_blur: bool
    resize2: tuple[float, str]
    noise2: tuple[str, float, float, int]
    jpeg2: float
    sinc_first: bool  # True: [resize + sinc] then JPEG; False: JPEG then [resize + sinc]
    final_mode: str


def _resize_draw(rng: np.random.Generator, prob: Sequence[float], rng_range: Sequence[float]) -> tuple[float, str]:
    kind = rng.choice(3, p=np.asarray(prob, dtype=np.float64) / np.sum(prob))
    scale = rng.uniform(1, rng_range[1]) if kind == 0 else rng.uniform(rng_range[0], 1) if kind == 1 else 1.0
    return float(scale), RESIZE_MODES[rng.integers(3)]


def _noise_draw(rng, gauss_prob, sigma_range, poisson_range, gray_prob) -> tuple[str, float, float, int]:
    if rng.uniform() < gauss_prob:
        kind, amount = "gaussian", rng.uniform(*sigma_range)
    else:
        kind, amount = "poisson", rng.uniform(*poisson_range)
    gray = 1.0 if rng.uniform() < gray_prob else 0.0
    return kind, float(amount), gray, int(rng.integers(2**31))


def draw_sample(cfg: DegradationConfig, seed: int, index: int) -> SampleDraws:
    rng = sample_rng(seed, index)
    with seeded_global_rng(int(rng.integers(2**31))):
        kernel1 = random_blur_kernel(cfg, 1)
        kernel2 = random_blur_kernel(cfg, 2)
        sinc_kernel = random_final_sinc_kernel(cfg)
    return SampleDraws(
        kernel1=kernel1,
        kernel2=kernel2,
        sinc_kernel=sinc_kernel,
        resize1=_resize_draw(rng, cfg.resize_prob, cfg.resize_range),
        noise1=_noise_draw(rng, cfg.gaussian_noise_prob, cfg.noise_range, cfg.poisson_scale_range, cfg.gray_noise_prob),
        jpeg1=float(rng.uniform(*cfg.jpeg_range)),
        second_blur=bool(rng.uniform() < cfg.second_blur_prob),
        resize2=_resize_draw(rng, cfg.resize_prob2, cfg.resize_range2),
        noise2=_noise_draw(
            rng, cfg.gaussian_noise_prob2, cfg.noise_range2, cfg.poisson_scale_range2, cfg.gray_noise_prob2
        ),
        jpeg2=float(rng.uniform(*cfg.jpeg_range2)),
        sinc_first=bool(rng.uniform() < 0.5),
        final_mode=RESIZE_MODES[rng.integers(3)],
    )


# ----------------------------------------------------------------------------- per-sample ops


def add_noise(x: torch.Tensor, noise: tuple[str, float, float, int]) -> torch.Tensor:
    """Gaussian or Poisson noise on one sample x (1,3,h,w), clipped to [0,1].

    basicsr's generate_*_noise_pt draw from the global torch RNG, so we fork it and seed it per sample.
    """
    kind, amount, gray, torch_seed = noise
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(torch_seed)
        if kind == "gaussian":
            n = generate_gaussian_noise_pt(x, sigma=amount, gray_noise=gray)
        else:
            n = generate_poisson_noise_pt(x, scale=amount, gray_noise=gray)
    return torch.clamp(x + n, 0, 1)


class SeparableUSMSharp(USMSharp):
    """basicsr USMSharp with its 51x51 Gaussian applied as two 1-D passes (same result up to float rounding).

    Why: basicsr convolves with the full 2-D kernel, 2601 MACs/pixel; that alone took ~1.8 s per 512^2 image on CPU.
    """

    def __init__(self, radius: int = 50, sigma: float = 0):
        super().__init__(radius, sigma)
        k1d = cv2.getGaussianKernel(self.radius, sigma)[:, 0]  # the 2-D kernel is outer(k1d, k1d)
        self.register_buffer("kernel1d", torch.as_tensor(k1d, dtype=torch.float32))

    def _blur(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        r = self.radius // 2
        k = self.kernel1d.to(x.dtype)
        x = F.pad(x, (r, r, r, r), mode="reflect").reshape(b * c, 1, h + 2 * r, w + 2 * r)
        x = F.conv2d(F.conv2d(x, k.view(1, 1, -1, 1)), k.view(1, 1, 1, -1))
        return x.view(b, c, h, w)

    def forward(self, img: torch.Tensor, weight: float = 0.5, threshold: float = 10) -> torch.Tensor:
        residual = img - self._blur(img)
        soft_mask = self._blur((torch.abs(residual) * 255 > threshold).float())
        sharp = torch.clip(img + weight * residual, 0, 1)
        return soft_mask * sharp + (1 - soft_mask) * img


# ----------------------------------------------------------------------------- the pipeline


class RealESRGANDegradation(torch.nn.Module):
    """HR (B,3,H,W) in [0,1] -> dict(lr=(B,3,H/s,W/s) in [0,1] (8-bit quantised), gt=(B,3,H,W)).

    ``gt`` is the USM-sharpened HR when ``cfg.use_usm`` (what Real-ESRGAN degrades and trains against), else ``hr``.
    Device follows ``hr``; no parameters. H and W must be divisible by ``cfg.scale``.
    """

    def __init__(self, cfg: DegradationConfig | None = None):
        super().__init__()
        self.cfg = cfg or DegradationConfig()
        self.usm_sharpener = SeparableUSMSharp()
        self.jpeger = DiffJPEG(differentiable=False)

    def draws(self, indices: Sequence[int], seed: int) -> list[SampleDraws]:
        return [draw_sample(self.cfg, seed, int(i)) for i in indices]

    def _jpeg(self, x: torch.Tensor, quality: float) -> torch.Tensor:
        # DiffJPEG can return a non-contiguous layout that basicsr filter2D's .view() rejects
        return self.jpeger(torch.clamp(x, 0, 1), quality=float(quality)).contiguous()

    def _degrade_one(self, x: torch.Tensor, d: SampleDraws, hr_size: tuple[int, int]) -> torch.Tensor:
        """Stages after the first blur for one sample: x (1,3,H,W) -> (1,3,H/s,W/s)."""
        cfg, (h, w) = self.cfg, hr_size
        # first stage: resize, noise, JPEG
        scale, mode = d.resize1
        x = F.interpolate(x, scale_factor=scale, mode=mode)
        x = add_noise(x, d.noise1)
        x = self._jpeg(x, d.jpeg1)
        # second stage: blur, resize (relative to the LR size), noise
        if d.second_blur:
            x = filter2D(x, torch.as_tensor(d.kernel2, dtype=x.dtype, device=x.device)[None])
        scale, mode = d.resize2
        x = F.interpolate(x, size=(int(h / cfg.scale * scale), int(w / cfg.scale * scale)), mode=mode)
        x = add_noise(x, d.noise2)
        # [resize back + final sinc] and JPEG, in random order (other orders give twisted lines, per Real-ESRGAN)
        sinc = torch.as_tensor(d.sinc_kernel, dtype=x.dtype, device=x.device)[None]
        if not d.sinc_first:
            x = self._jpeg(x, d.jpeg2)
        x = F.interpolate(x, size=(h // cfg.scale, w // cfg.scale), mode=d.final_mode)
        x = filter2D(x, sinc)
        if d.sinc_first:
            x = self._jpeg(x, d.jpeg2)
        return x

    @torch.no_grad()
    def forward(self, hr: torch.Tensor, indices: Sequence[int] | torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
        if hr.ndim != 4 or hr.shape[1] != 3:
            raise ValueError(f"hr must be (B, 3, H, W), got {tuple(hr.shape)}")
        b, _, h, w = hr.shape
        indices = [int(i) for i in (indices.tolist() if torch.is_tensor(indices) else indices)]
        if len(indices) != b:
            raise ValueError(f"got {len(indices)} indices for a batch of {b}")
        if h % self.cfg.scale or w % self.cfg.scale:
            raise ValueError(f"HR size {h}x{w} is not divisible by scale {self.cfg.scale}")
        self.to(hr.device)
        hr = hr.float()
        gt = self.usm_sharpener(hr) if self.cfg.use_usm else hr  # (B,3,H,W)
        draws = self.draws(indices, seed)
        kernel1 = torch.as_tensor(np.stack([d.kernel1 for d in draws]), dtype=hr.dtype, device=hr.device)  # (B,K,K)
        out = filter2D(gt, kernel1)  # batched per-sample kernels
        out = torch.cat([self._degrade_one(out[i : i + 1], d, (h, w)) for i, d in enumerate(draws)])
        lr = torch.clamp((out * 255.0).round(), 0, 255) / 255.0  # (B,3,H/s,W/s), 8-bit like a saved LR image
        return {"lr": lr, "gt": gt}
