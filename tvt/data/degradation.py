"""Real-ESRGAN second-order degradation (Wang et al. 2021), used by TVT/OSEDiff to synthesise LR training inputs
(paper Sec. 4.1, "The Real-ESRGAN degradation pipeline [66] is used to generate LR-HR training pairs").

    cfg = load_degradation_config("realesrgan", ["jpeg_range=[50, 95]"])
    out = RealESRGANDegradation(cfg)(hr, indices, seed)   # hr (B,3,H,W) in [0,1] -> out["lr"] (B,3,H/4,W/4)
    item = DegradeSample(cfg, seed)({"hr": hr[0], "position": 7})   # one sample: + lr, lr_up, gt (3,h,w)

The pipeline and every probability/range mirror Real-ESRGAN's ``realesrgan_dataset.py`` + ``RealESRGANModel.feed_data``
(option names kept), which the official OSEDiff/TVT code runs per sample (``dataloaders/realesrgan.py``).

Where it runs in training: ``DegradeSample`` degrades each item in the DataLoader workers, on CPU, as the official
OSEDiff/TVT dataset does (``PairedSROnlineDataset.__getitem__``), so the GPU never waits for it when there are enough
workers (``train.num_workers``). Training has no on-device path: degrading the batch on the GPU inside the step put
per-sample chains of small kernels on the critical path, and CPU workers hide the whole cost. The batched call
(any device) stays for test-set building, tests and benchmarks.

Determinism: every random choice of sample i (kernels, scales, modes, qualities, noise tensors) comes from generators
seeded by (seed, index) only, so a sample's LR does not depend on batch size, batch composition or worker count.
Real-ESRGAN's feed_data draws one resize scale / noise type per *batch* from the global RNGs instead; OSEDiff/TVT
draw them per sample, as we do. Because scales differ per sample, the stages between the first blur and the final
resize run per sample (their tensors have different sizes); USM, the first blur, the final sinc filter and the 8-bit
rounding are batched.

Pipeline (per sample; shapes for HR (3,H,W), scale s):
    gt    = USM(hr) if use_usm else hr                                      (3,H,W)
    stage 1: blur(kernel1) -> resize(r1) -> noise -> JPEG                   (3,r1*H,r1*W)
    stage 2: [blur(kernel2)] -> resize(r2*H/s) -> noise                     (3,r2*H/s,r2*W/s)
    final:   [JPEG -> resize(H/s) -> sinc] or [resize(H/s) -> sinc -> JPEG] (3,H/s,W/s)
    lr    = round(255 * clamp(out)) / 255
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
from tvt.config import ConfigError, load_config

patch_basicsr_import()
from basicsr.data.degradations import circular_lowpass_kernel, random_mixed_kernels  # noqa: E402  (after the shim)
from basicsr.utils.diffjpeg import DiffJPEG  # noqa: E402
from basicsr.utils.img_process_util import USMSharp  # noqa: E402
from torchvision.transforms.functional import rgb_to_grayscale  # noqa: E402

PRESET_DIR = Path(__file__).with_name("presets")  # package data: realesrgan.yaml, tiny.yaml
KERNEL_LIST = ["iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso"]
KERNEL_PROB = [0.45, 0.25, 0.12, 0.03, 0.12, 0.03]
RESIZE_MODES = ["area", "bilinear", "bicubic"]
USM_RADIUS = 50  # basicsr USMSharp default: 51x51 Gaussian


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
    # USM-sharpen the GT, then degrade the sharpened GT and return it as the target (Real-ESRGAN x4plus: true).
    # Off by default: the official OSEDiff and TVT data loaders have this line commented out.
    use_usm: bool = False

    def __post_init__(self) -> None:
        for name in ("blur_kernel_size", "blur_kernel_size2"):
            k = getattr(self, name)
            if k < 3 or k % 2 == 0:
                raise ValueError(f"{name} must be an odd number >= 3, got {k}")
        if self.scale < 1:
            raise ValueError(f"scale must be >= 1, got {self.scale}")
        for lst, prob in (("kernel_list", "kernel_prob"), ("kernel_list2", "kernel_prob2")):
            if len(getattr(self, lst)) != len(getattr(self, prob)):
                raise ValueError(f"{lst} and {prob} must have the same length")
            bad = set(getattr(self, lst)) - set(KERNEL_LIST)
            if bad:
                raise ValueError(f"{lst}: unknown kernel types {sorted(bad)}; known: {KERNEL_LIST}")
        for name in ("resize_prob", "resize_prob2"):
            if len(getattr(self, name)) != 3:
                raise ValueError(f"{name} must be [up, down, keep] probabilities")
        for name in ("resize_range", "resize_range2"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= 1 <= hi:
                raise ValueError(f"{name} must be [low <= 1, high >= 1] with low > 0, got {[lo, hi]}")

    def min_hr_size(self) -> int:
        """Smallest HR side this config can degrade: every reflect pad must be smaller than the image it pads."""
        need = [self.blur_kernel_size // 2 + 1, self.scale * (self.blur_kernel_size // 2 + 1)]  # blur 1, final sinc
        need.append(math.ceil((self.blur_kernel_size2 // 2 + 1) / self.resize_range[0]))  # blur 2 after resize 1
        need.append(math.ceil(self.scale / self.resize_range2[0]))  # resize 2 keeps >= 1 pixel
        if self.use_usm:
            need.append(USM_RADIUS // 2 + 1)
        return max(need)


def load_degradation_config(path_or_name: str | Path = "realesrgan", overrides: Sequence[str] = ()) -> DegradationConfig:
    """A preset name ("realesrgan", "tiny": tvt/data/presets/) or a YAML path, plus ``key=value`` overrides."""
    return load_config(DegradationConfig, config_path(path_or_name), overrides)  # __post_init__ validates


def config_path(path_or_name: str | Path) -> Path:
    """The YAML file behind a preset name or a path."""
    preset = PRESET_DIR / f"{path_or_name}.yaml"
    if preset.is_file():
        return preset
    path = Path(path_or_name)
    if not path.is_file():
        raise ConfigError(f"degradation config '{path_or_name}' is neither a preset ({', '.join(presets())}) nor a file")
    return path


def presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


# ----------------------------------------------------------------------------- per-sample random draws


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The generator every draw of sample ``index`` comes from (independent of batch size and workers)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index) & 0xFFFFFFFF])


@contextmanager
def seeded_global_rng(seed: int):
    """Seed Python ``random`` + ``np.random`` for the block, then restore them.

    basicsr's kernel samplers draw from these global RNGs; forking them keeps our draws per-sample and lets us
    call basicsr unchanged (so kernels equal basicsr's for the same seed). Not thread-safe (processes are fine).
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

    kernel1: np.ndarray  # (K1, K1)
    kernel2: np.ndarray  # (K2, K2)
    sinc_kernel: np.ndarray  # (K1, K1)
    resize1: tuple[float, str]  # (scale, mode)
    noise1: tuple[str, float, float, int]  # (gaussian|poisson, sigma-or-scale, gray 0/1, torch seed)
    jpeg1: float
    second_blur: bool
    resize2: tuple[float, str]
    noise2: tuple[str, float, float, int]
    jpeg2: float
    sinc_first: bool  # True: [resize + sinc] then JPEG; False: JPEG then [resize + sinc]
    final_mode: str
    resize_back_mode: str  # OSEDiff/TVT degrade_process(resize_bak=True): LR back to the HR size with this mode


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
        resize_back_mode=RESIZE_MODES[rng.integers(3)],  # drawn last: earlier draws stay as they were
    )


# ----------------------------------------------------------------------------- ops (batched over samples)


def filter2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """x (B,C,H,W), kernel (B,K,K) or (1,K,K) (shared), K odd -> (B,C,H,W); reflect padding. = basicsr filter2D.

    Own version because basicsr's switches to a 1-channel convolution when one kernel is given, which rounds
    differently from its grouped path (a sample's result would depend on batch size) and is ~1.7x slower on CPU.
    """
    b, c, h, w = x.shape
    k = kernel.shape[-1]
    if k % 2 != 1 or kernel.shape[-2] != k or kernel.shape[0] not in (1, b):
        raise ValueError(f"kernel must be (1 or {b}, K, K) with K odd, got {tuple(kernel.shape)}")
    p = k // 2
    weight = kernel.to(x).expand(b, k, k).repeat_interleave(c, dim=0)[:, None]  # (B*C, 1, K, K)
    x = F.pad(x, (p, p, p, p), mode="reflect").reshape(1, b * c, h + 2 * p, w + 2 * p)
    return F.conv2d(x, weight, groups=b * c).view(b, c, h, w)


class SeparableUSMSharp(USMSharp):
    """basicsr USMSharp with its 51x51 Gaussian applied as two grouped 1-D passes (same result up to float rounding).

    Why: basicsr convolves with the full 2-D kernel, 2601 MACs/pixel; that alone took ~1.8 s per 512^2 image on CPU.
    """

    def __init__(self, radius: int = USM_RADIUS, sigma: float = 0):
        super().__init__(radius, sigma)
        k1d = cv2.getGaussianKernel(self.radius, sigma)[:, 0]  # the 2-D kernel is outer(k1d, k1d)
        self.register_buffer("kernel1d", torch.as_tensor(k1d, dtype=torch.float32))

    def _blur(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        r, n = self.radius // 2, b * c
        k = self.kernel1d.to(x)
        x = F.pad(x, (r, r, r, r), mode="reflect").reshape(1, n, h + 2 * r, w + 2 * r)
        x = F.conv2d(x, k.view(1, 1, -1, 1).expand(n, 1, -1, 1), groups=n)  # vertical pass
        x = F.conv2d(x, k.view(1, 1, 1, -1).expand(n, 1, 1, -1), groups=n)  # horizontal pass
        return x.view(b, c, h, w)

    def forward(self, img: torch.Tensor, weight: float = 0.5, threshold: float = 10) -> torch.Tensor:
        residual = img - self._blur(img)
        soft_mask = self._blur((torch.abs(residual) * 255 > threshold).float())
        sharp = torch.clip(img + weight * residual, 0, 1)
        return soft_mask * sharp + (1 - soft_mask) * img


def gaussian_noise(x: torch.Tensor, sigma: float, gray: bool, generator: torch.Generator) -> torch.Tensor:
    """basicsr generate_gaussian_noise_pt for one sample x (1,C,h,w), drawing from ``generator``: noise (1,C,h,w).

    Own version because basicsr's draws from the global torch RNG (no generator argument). Same draws in the same
    order (gray field first), so for equal seeds the noise is bitwise basicsr's.
    """
    _, c, h, w = x.shape
    if gray:
        n = torch.randn(h, w, generator=generator, dtype=x.dtype, device=x.device) * sigma / 255.0
        return n.view(1, 1, h, w).expand(1, c, h, w)
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device) * sigma / 255.0


def _poisson(img: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    img = torch.clamp((img * 255.0).round(), 0, 255) / 255.0
    # basicsr counts levels with len(torch.unique(img)) (a full sort); the image is 8-bit, so a 256-bin count is equal
    levels = torch.bincount((img * 255.0).round().long().flatten(), minlength=256).count_nonzero().item()
    vals = 2.0 ** math.ceil(math.log2(levels))
    return torch.poisson(img * vals, generator=generator) / vals - img


def poisson_noise(x: torch.Tensor, scale: float, gray: bool, generator: torch.Generator) -> torch.Tensor:
    """basicsr generate_poisson_noise_pt for one sample x (1,3,h,w), drawing from ``generator``: noise (1,3,h,w).

    Own version for the same reason as gaussian_noise; the level count uses bincount (equal, no sort).
    """
    if gray:
        return _poisson(rgb_to_grayscale(x, num_output_channels=1), generator).expand_as(x) * scale
    return _poisson(x, generator) * scale


def add_noise(x: torch.Tensor, noise: tuple[str, float, float, int]) -> torch.Tensor:
    """Gaussian or Poisson noise on one sample x (1,3,h,w), clipped to [0,1] (basicsr random_add_*_noise_pt).

    ``noise`` = (kind, sigma-or-scale, gray 0/1, seed); the noise comes from a generator seeded with ``seed`` on
    x's device (CPU and CUDA streams differ), never from the global RNG.
    """
    kind, amount, gray, seed = noise
    g = torch.Generator(device=x.device).manual_seed(int(seed))
    n = gaussian_noise(x, amount, gray > 0, g) if kind == "gaussian" else poisson_noise(x, amount, gray > 0, g)
    return torch.clamp(x + n, 0, 1)


# ----------------------------------------------------------------------------- the pipeline


class RealESRGANDegradation(torch.nn.Module):
    """HR (B,3,H,W) in [0,1] -> dict(lr=(B,3,H/s,W/s) in [0,1] (8-bit quantised), gt=(B,3,H,W)), float32.

    ``resize_back=True`` adds ``lr_up`` (B,3,H,W): the LR resized back to the HR size with a per-sample random
    mode (area / bilinear / bicubic) and rounded to 8 bit, the generator input of OSEDiff/TVT training
    (their ``degrade_process(img, resize_bak=True)``).

    ``gt`` is the USM-sharpened HR when ``cfg.use_usm`` (what Real-ESRGAN degrades and trains against), else ``hr``.
    Device follows ``hr``; no parameters. H and W must be divisible by ``cfg.scale`` and >= ``cfg.min_hr_size()``.
    ``indices`` (B,) and ``seed`` fix every random draw of each sample (see the module docstring).
    """

    def __init__(self, cfg: DegradationConfig | None = None):
        super().__init__()
        self.cfg = cfg or DegradationConfig()
        self.usm_sharpener = SeparableUSMSharp()
        self.jpeger = DiffJPEG(differentiable=False)  # as Real-ESRGAN; no gradients flow through the degradation

    def draws(self, indices: Sequence[int], seed: int) -> list[SampleDraws]:
        return [draw_sample(self.cfg, seed, int(i)) for i in indices]

    def _jpeg(self, x: torch.Tensor, quality: float) -> torch.Tensor:
        # DiffJPEG can return a non-contiguous layout that .view() rejects later
        return self.jpeger(torch.clamp(x, 0, 1), quality=float(quality)).contiguous()

    def _middle(self, x: torch.Tensor, d: SampleDraws, hr_size: tuple[int, int]) -> torch.Tensor:
        """One sample from after the first blur to before the final sinc: (1,3,H,W) -> (1,3,H/s,W/s)."""
        cfg, (h, w) = self.cfg, hr_size
        # first stage: resize, noise, JPEG
        scale, mode = d.resize1
        x = F.interpolate(x, scale_factor=scale, mode=mode)  # (1,3,~r1*H,~r1*W)
        x = add_noise(x, d.noise1)
        x = self._jpeg(x, d.jpeg1)
        # second stage: blur, resize (relative to the LR size), noise
        if d.second_blur:
            x = filter2d(x, torch.as_tensor(d.kernel2, dtype=x.dtype, device=x.device)[None])
        scale, mode = d.resize2
        x = F.interpolate(x, size=(int(h / cfg.scale * scale), int(w / cfg.scale * scale)), mode=mode)
        x = add_noise(x, d.noise2)
        # [resize back + final sinc] and JPEG in random order (other orders give twisted lines, per Real-ESRGAN);
        # the sinc itself runs batched in forward()
        if not d.sinc_first:
            x = self._jpeg(x, d.jpeg2)
        return F.interpolate(x, size=(h // cfg.scale, w // cfg.scale), mode=d.final_mode)

    @torch.no_grad()
    def forward(self, hr: torch.Tensor, indices: Sequence[int] | torch.Tensor, seed: int,
                resize_back: bool = False) -> dict[str, torch.Tensor]:
        if hr.ndim != 4 or hr.shape[1] != 3:
            raise ValueError(f"hr must be (B, 3, H, W), got {tuple(hr.shape)}")
        b, _, h, w = hr.shape
        indices = [int(i) for i in (indices.tolist() if torch.is_tensor(indices) else indices)]
        if len(indices) != b:
            raise ValueError(f"got {len(indices)} indices for a batch of {b}")
        if h % self.cfg.scale or w % self.cfg.scale:
            raise ValueError(f"HR size {h}x{w} is not divisible by scale {self.cfg.scale}")
        if min(h, w) < self.cfg.min_hr_size():
            raise ValueError(f"HR size {h}x{w} is too small for this degradation config (needs >= "
                             f"{self.cfg.min_hr_size()} px; smaller kernels, e.g. the preset 'tiny', need less)")
        self.to(hr.device)
        hr = hr.float()
        gt = self.usm_sharpener(hr) if self.cfg.use_usm else hr  # (B,3,H,W)
        draws = self.draws(indices, seed)

        def kernels(name: str) -> torch.Tensor:  # (B,K,K) per-sample kernels
            return torch.as_tensor(np.stack([getattr(d, name) for d in draws]), dtype=hr.dtype, device=hr.device)

        out = filter2d(gt, kernels("kernel1"))  # (B,3,H,W)
        out = torch.cat([self._middle(out[i : i + 1], d, (h, w)) for i, d in enumerate(draws)])  # (B,3,H/s,W/s)
        out = filter2d(out, kernels("sinc_kernel"))
        out = torch.cat([self._jpeg(out[i : i + 1], d.jpeg2) if d.sinc_first else out[i : i + 1]
                         for i, d in enumerate(draws)])
        lr = torch.clamp((out * 255.0).round(), 0, 255) / 255.0  # (B,3,H/s,W/s), 8-bit like a saved LR image
        if not resize_back:
            return {"lr": lr, "gt": gt}
        # resized from the unrounded LR, then rounded, as the official degrade_process does
        lr_up = torch.cat([F.interpolate(out[i : i + 1], size=(h, w), mode=d.resize_back_mode) for i, d in enumerate(draws)])
        return {"lr": lr, "gt": gt, "lr_up": torch.clamp((lr_up * 255.0).round(), 0, 255) / 255.0}  # (B,3,H,W)


class DegradeSample:
    """Per-sample transform for the training data loader: item dict(hr=(3,H,W) in [0,1], position=int) ->
    the item plus ``lr`` (3,H/s,W/s), ``gt`` (3,H,W) and, with ``resize_back``, ``lr_up`` (3,H,W) (all float32).

    Every value is row i of the batched ``RealESRGANDegradation(cfg)(hr_batch, positions, seed, resize_back)`` on
    the same device, bit for bit: a sample's draws depend on (seed, position) only and no op mixes samples. Holds
    only the degradation (picklable: DataLoader workers get a copy)."""

    def __init__(self, cfg: DegradationConfig, seed: int, resize_back: bool = True):
        self.degradation, self.seed, self.resize_back = RealESRGANDegradation(cfg), int(seed), resize_back

    @property
    def cfg(self) -> DegradationConfig:
        return self.degradation.cfg

    def __call__(self, item: dict) -> dict:
        out = self.degradation(item["hr"][None], [item["position"]], self.seed, resize_back=self.resize_back)
        return {**item, **{k: v[0] for k, v in out.items()}}


__all__ = [
    "DegradationConfig",
    "DegradeSample",
    "RealESRGANDegradation",
    "SampleDraws",
    "SeparableUSMSharp",
    "add_noise",
    "draw_sample",
    "filter2d",
    "gaussian_noise",
    "load_degradation_config",
    "poisson_noise",
    "random_blur_kernel",
    "random_final_sinc_kernel",
    "seeded_global_rng",
]
