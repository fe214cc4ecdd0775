"""The one-step Real-ISR generator shared by training and inference (paper Sec. 3.3, Fig. 2b).

    lr_up (B, 3, H, W) in [-1, 1]   bicubic-upsampled LR
      -> encode   z  (B, 4, H/f, W/f)          f = 4 for VAE-D4 (TVT), 8 for VAE-D8 (OSEDiff)
      -> denoise  z0 = (z - sqrt(1 - a_t) * eps(z, t, c)) / sqrt(a_t),  t = 1
      -> decode   sr (B, 3, H, W) in [-1, 1]

t = 1: Sec. 3.3, under Eq. (5), "the time step is set to 1 in our work" (official train.sh and
test_realsr.sh: --time_step 1). At t = 1 the map starts near the identity on the LR latent
(x0 = 1.0009 z - 0.041 eps for SD 2.1's schedule); t stays a constructor argument / config key.

``denoise`` is exactly one DDPMScheduler.step with a single inference step (its prev_t is < 0, so the
step returns the predicted x0); we write the formula out so no scheduler state is involved.
The same class runs TVT (VAE-D4 + CE-UNet), the OSEDiff baseline (VAE-D8 + SD UNet) and every ablation of
tvt.models.architectures (latents of C channels: S3's are 8).

Large images: a ``Tiling`` passed to ``encode``/``denoise``/``decode`` (per call, no state kept) runs ``denoise``
on overlapping latent tiles blended with Gaussian weights (OSEDiff's / TVT inference_tile.py's scheme), ``batch``
tiles per UNet call, and the VAE in diffusers' tiles for that call only (tvt.models.vae.vae_tiling).

Speed (opt-in, ``enable_fast_inference``; off, the code above runs as written): ``torch.compile`` of the UNet and
the VAE encoder/decoder, channels_last, and an SDPA backend order (``sdpa_order``). The posterior noise is drawn
before the encoder runs (same values as ``latent_dist.sample``), so no stage waits on a host-to-device copy.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from diffusers.utils.torch_utils import randn_tensor
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from .architectures import ARCHITECTURES  # noqa: F401  (re-exported: the one registry of Tables 5 and 7's rows)
from .sd21 import downscale_factor
from .vae import vae_tiling

logger = logging.getLogger(__name__)

# Sec. 3.3, under Eq. (5): "the time step is set to 1 in our work" (official train.sh and test_realsr.sh:
# --time_step 1; inference.py's argparse default 999 is overridden by both). The default of training, inference,
# exports and the official-release loader.
GENERATOR_TIMESTEP = 1
COMPILED_PARTS = ("unet", "vae.encoder", "vae.decoder")  # what enable_fast_inference compiles
SDPA_BACKENDS = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
                 "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}
# mode="auto" on CUDA: max-autotune, with CUDA graphs only for graphs of static shapes (a graph per shape would be
# recorded otherwise: one per image size of a folder). Latent tiles of one size, a fixed-size batch: static.
AUTO_CUDA_OPTIONS = {"max_autotune": True, "coordinate_descent_tuning": True, "triton.cudagraphs": True,
                     "triton.cudagraph_skip_dynamic_graphs": True}
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune", "auto")


@dataclass(frozen=True)
class Tiling:
    """The tiling of one generator call: ``denoise`` in ``tile`` x ``tile`` latent tiles overlapping by ``overlap``
    latent pixels, ``batch`` tiles per UNet call (tile 0 = whole); the VAE in ``vae_tile`` x ``vae_tile`` image
    tiles (0 = whole)."""

    tile: int = 0
    overlap: int = 0
    batch: int = 1
    vae_tile: int = 0

    def __post_init__(self):
        if self.tile > 0 and not 0 <= self.overlap < self.tile:
            raise ValueError(f"tile overlap must be in [0, tile={self.tile}), got {self.overlap}")
        if self.batch < 1:
            raise ValueError(f"tile batch must be >= 1, got {self.batch}")


WHOLE = Tiling()  # no tiling


class OneStepGenerator(nn.Module):
    def __init__(self, vae: nn.Module, unet: nn.Module, alphas_cumprod: torch.Tensor, timestep: int = GENERATOR_TIMESTEP,
                 sample_posterior: bool = True):
        super().__init__()
        self.vae = vae
        self.unet = unet
        self.timestep = int(timestep)
        # Official: the VAE posterior is sampled (latent_dist.sample()); False uses its mode (deterministic).
        self.sample_posterior = sample_posterior
        self.register_buffer("alphas_cumprod", alphas_cumprod.detach().float().clone(), persistent=False)
        # fast path (enable_fast_inference): off
        self.memory_format = torch.preserve_format
        self.sdpa_backend: str | None = None
        self._sdpa_orders: dict[tuple, list[SDPBackend] | None] = {}
        self._compiled: list[str] = []

    @property
    def scale_factor(self) -> int:
        return downscale_factor(self.vae.config)

    # ----- fast path -------------------------------------------------------------------------
    def enable_fast_inference(self, compile: bool | Sequence[str] = True, mode: str | None = "auto",
                              backend: str | Callable = "inductor", dynamic: bool | None = None,
                              channels_last: bool = True, sdpa_backend: str | None = "auto") -> None:
        """Opt-in speed-ups; the math is unchanged (outputs equal the eager ones up to float rounding). Call it on
        the device the models run on (the compile options follow the device).

        compile: ``torch.compile`` the forward of the UNet and of the VAE encoder and decoder (``COMPILED_PARTS``,
            or the names given; the modules, their hooks and state dicts stay as they are). The first call of each
            shape compiles.
        mode: torch.compile's mode, or "auto": on CUDA max-autotune with CUDA graphs for static-shape graphs only
            (``AUTO_CUDA_OPTIONS``), elsewhere torch's default. "reduce-overhead"/"max-autotune" record CUDA graphs
            for every shape met; outputs are cloned out of the graphs' memory in all CUDA-graph modes.
        backend, dynamic: torch.compile's (backend "aot_eager" traces without code generation: quick checks).
        channels_last: weights and inputs of the UNet and VAE in channels_last memory format.
        sdpa_backend: "auto" | "flash" | "efficient" | "cudnn" | "math" | None (torch's order): see ``sdpa_order``.
        """
        if sdpa_backend is not None and sdpa_backend != "auto" and sdpa_backend not in SDPA_BACKENDS:
            raise ValueError(f"sdpa_backend must be auto, {', '.join(SDPA_BACKENDS)} or None, got '{sdpa_backend}'")
        parts = COMPILED_PARTS if compile is True else tuple(compile or ())
        if not set(parts) <= set(COMPILED_PARTS):
            raise ValueError(f"compile: parts must be among {', '.join(COMPILED_PARTS)}, got {', '.join(parts)}")
        self.disable_fast_inference()
        self.sdpa_backend = sdpa_backend
        if channels_last:
            self.memory_format = torch.channels_last
            for m in (self.unet, self.vae):
                m.to(memory_format=torch.channels_last)
        if parts:
            device = next(self.unet.parameters()).device
            kwargs = dict(backend=backend, dynamic=dynamic)
            if mode == "auto" and device.type == "cuda" and backend == "inductor":
                kwargs["options"] = AUTO_CUDA_OPTIONS
            elif mode != "auto":
                kwargs["mode"] = mode
            graphs = device.type == "cuda" and backend == "inductor" and mode in CUDA_GRAPH_MODES
            for name in parts:
                module = self.get_submodule(name)
                # an instance attribute over the class's forward: undone by deleting it
                module.forward = _compiled(module.forward, graphs, **kwargs)
                self._compiled.append(name)
            logger.info("torch.compile of %s (%s)", ", ".join(parts), ", ".join(f"{k}={v}" for k, v in kwargs.items()))

    def disable_fast_inference(self) -> None:
        """Back to eager, contiguous memory format and torch's SDPA order (the dtype stays)."""
        for name in self._compiled:
            del self.get_submodule(name).forward
        self._compiled = []
        if self.memory_format == torch.channels_last:
            for m in (self.unet, self.vae):
                m.to(memory_format=torch.contiguous_format)
        self.memory_format = torch.preserve_format
        self.sdpa_backend = None
        self._sdpa_orders.clear()

    @property
    def compiled(self) -> tuple[str, ...]:
        """The parts whose forward is compiled (empty when the fast path is off)."""
        return tuple(self._compiled)

    @property
    def sdpa_choices(self) -> dict[str, str]:
        """The SDPA order used so far, per "device dtype": backend names, first choice first, or "torch default"."""
        return {f"{d} {t}": " > ".join(b.name for b in o) if o else "torch default" for (d, t), o in self._sdpa_orders.items()}

    def attention(self, like: torch.Tensor):
        """The SDPA backend context for tensors like ``like`` (a no-op unless the fast path chose an order)."""
        if self.sdpa_backend is None:
            return contextlib.nullcontext()
        key = (like.device, like.dtype)
        if key not in self._sdpa_orders:
            self._sdpa_orders[key] = sdpa_order(self.sdpa_backend, like.device, like.dtype)
        order = self._sdpa_orders[key]
        return contextlib.nullcontext() if order is None else sdpa_kernel(order, set_priority=True)

    def encode(self, lr_up: torch.Tensor, generator: torch.Generator | None = None, tiling: Tiling = WHOLE) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> scaled latent (B, 4, H/f, W/f); the VAE in ``tiling.vae_tile`` tiles."""
        f = self.scale_factor
        if lr_up.ndim != 4 or lr_up.shape[1] != 3 or lr_up.shape[-1] % f or lr_up.shape[-2] % f:
            raise ValueError(f"generator input must be (B, 3, H, W) with H, W multiples of {f}, got {tuple(lr_up.shape)}")
        with _no_autocast(lr_up):  # the VAE runs in its own dtype (fp32), as the official code
            x = lr_up.to(self.vae.dtype, memory_format=self.memory_format)
            noise = None
            if self.sample_posterior:  # latent_dist.sample(generator)'s draw, made before the encoder runs
                shape = (x.shape[0], self.vae.config.latent_channels, x.shape[-2] // f, x.shape[-1] // f)
                noise = randn_tensor(shape, generator=generator, device=x.device, dtype=self.vae.dtype)
            with self.attention(x), vae_tiling(self.vae, tiling.vae_tile):
                dist = self.vae.encode(x).latent_dist
            z = dist.mean + dist.std * noise if noise is not None else dist.mode()
        return z * self.vae.config.scaling_factor

    def denoise(self, z: torch.Tensor, prompt_embeds: torch.Tensor, tiling: Tiling = WHOLE) -> torch.Tensor:
        """One UNet evaluation at ``self.timestep``, turned into x0. z (B, 4, h, w), prompt_embeds (B, 77, D).

        In ``tiling``'s latent tiles when z is larger than a tile (the prompt repeated per tile)."""
        b = z.shape[0]
        if prompt_embeds.shape[0] != b:
            raise ValueError(f"prompt_embeds batch {prompt_embeds.shape[0]} != latent batch {b}")
        # k tiles of a batch come as (k * B, ...), tile-major: the prompts repeat k times
        return tiled_apply(lambda zt: self._denoise(zt, prompt_embeds.repeat(zt.shape[0] // b, 1, 1)), z, tiling.tile,
                           tiling.overlap, tiling.batch)

    def _denoise(self, z: torch.Tensor, prompt_embeds: torch.Tensor) -> torch.Tensor:
        t = torch.full((z.shape[0],), self.timestep, device=z.device, dtype=torch.long)
        x = z.to(self.unet.dtype, memory_format=self.memory_format)
        with self.attention(x):
            eps = self.unet(x, t, encoder_hidden_states=prompt_embeds.to(self.unet.dtype)).sample
        a_t = self.alphas_cumprod[self.timestep].to(z.device)
        return (z - (1 - a_t).sqrt() * eps.to(z.dtype)) / a_t.sqrt()

    def decode(self, z0: torch.Tensor, tiling: Tiling = WHOLE) -> torch.Tensor:
        """Scaled latent -> image in [-1, 1] (clamped, as the official code does); the VAE in ``tiling.vae_tile`` tiles."""
        with _no_autocast(z0):
            z = (z0.to(self.vae.dtype) / self.vae.config.scaling_factor).to(memory_format=self.memory_format)
            with self.attention(z), vae_tiling(self.vae, tiling.vae_tile):
                x = self.vae.decode(z).sample
        return x.clamp(-1, 1)

    def forward(self, lr_up: torch.Tensor, prompt_embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (sr image (B, 3, H, W) in [-1, 1], x0 latent (B, 4, H/f, W/f))."""
        z0 = self.denoise(self.encode(lr_up), prompt_embeds)
        return self.decode(z0), z0


def _no_autocast(x: torch.Tensor):
    """Mixed precision off inside (official: torch.cuda.amp.autocast(enabled=False) around the VAE); the meta device
    (FLOP counts) has no autocast."""
    if x.device.type == "meta":
        return contextlib.nullcontext()
    return torch.autocast(device_type=x.device.type, enabled=False)


# ---------------------------------------------------------------------------------------------
# Fast path: compiled forwards and the SDPA backend order
# ---------------------------------------------------------------------------------------------
def _compiled(forward: Callable, cuda_graphs: bool, **compile_kwargs) -> Callable:
    """torch.compile(forward); with CUDA graphs, each call starts a new graph step and its tensors are cloned out
    of the graphs' memory (the next replay overwrites it, and diffusers' VAE tiling keeps tile outputs)."""
    fn = torch.compile(forward, **compile_kwargs)
    if not cuda_graphs:
        return fn

    @functools.wraps(forward)
    def call(*args, **kwargs):
        torch.compiler.cudagraph_mark_step_begin()
        return torch.utils._pytree.tree_map_only(torch.Tensor, torch.clone, fn(*args, **kwargs))

    return call


def sdpa_order(name: str, device: torch.device | str, dtype: torch.dtype) -> list[SDPBackend] | None:
    """The SDPA backends to allow on ``device``/``dtype``, first choice first; None = torch's default order.

    "auto": cuDNN attention first on CUDA devices of compute capability >= 9.0 (Hopper: the fastest there), then
    torch's order (flash, efficient, math); torch's default order elsewhere. A named backend goes first, torch's
    order behind it for shapes it cannot run (e.g. flash with the VAE-D8 mid block's head dim 512). The first
    choice is tried once on a small problem against the math backend: when it does not run here or disagrees,
    that is logged and torch's default order is used (so "cudnn" on a CPU falls back, with a log line).
    """
    device = torch.device(device)
    if name == "auto":
        if device.type != "cuda" or torch.cuda.get_device_capability(device) < (9, 0):
            return None
        name = "cudnn"
    first = SDPA_BACKENDS[name]
    if not _sdpa_works(first, device, dtype):
        logger.info("SDPA backend %s does not run on %s (%s): torch's default order", name, device, dtype)
        return None
    logger.info("SDPA backend %s first on %s (%s)", name, device, dtype)
    return [first] + [b for b in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH) if b != first]


def _sdpa_works(backend: SDPBackend, device: torch.device, dtype: torch.dtype) -> bool:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 77, 64, generator=g).to(device, dtype) for _ in range(3))  # head dim 64, as SD's
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # torch explains in warnings why a kernel does not apply
            with sdpa_kernel([backend]):
                out = F.scaled_dot_product_attention(q, k, v)
            with sdpa_kernel([SDPBackend.MATH]):
                ref = F.scaled_dot_product_attention(q, k, v)
    except RuntimeError:
        return False
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    return bool(torch.allclose(out.float(), ref.float(), atol=tol, rtol=tol))


# ---------------------------------------------------------------------------------------------
# Latent tiling
# ---------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=16)
def _tile_weights(h: int, w: int, device: torch.device) -> torch.Tensor:
    """``gaussian_weights`` on ``device``, copied there once per tile shape (not on every denoise)."""
    return gaussian_weights(h, w).to(device)


def gaussian_weights(h: int, w: int, var: float = 0.01) -> torch.Tensor:
    """(1, 1, h, w) tile weights peaking at the centre (OSEDiff's choice: var 0.01 of the tile size squared)."""
    y = torch.arange(h, dtype=torch.float64)
    x = torch.arange(w, dtype=torch.float64)
    wy = torch.exp(-((y - (h - 1) / 2) ** 2) / (h * h) / (2 * var))
    wx = torch.exp(-((x - (w - 1) / 2) ** 2) / (w * w) / (2 * var))
    return (wy[:, None] * wx[None, :]).float()[None, None]


def tile_starts(n: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering [0, n) with at least ``overlap``; the last one ends at n."""
    if n <= tile:
        return [0]
    step = tile - overlap
    return list(range(0, n - tile, step)) + [n - tile]


def tile_groups(n: int, batch: int) -> list[int]:
    """Sizes of the groups ``n`` tiles are run in, at most ``batch`` each, as even as can be (fewer shapes)."""
    groups = -(-n // max(batch, 1))
    return [n // groups + (i < n % groups) for i in range(groups)]


def tiled_apply(fn: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor, tile: int, overlap: int,
                batch: int = 1) -> torch.Tensor:
    """Apply a size-preserving ``fn`` on overlapping tiles of z (B, C, h, w) and blend with Gaussian weights.

    The blend is a per-pixel convex combination (weights normalised to sum 1), so a spatially
    equivariant ``fn`` gives the untiled result; when z fits one tile, ``fn(z)`` is returned as is.
    ``batch`` > 1: up to that many tiles go through ``fn`` together, as (k * B, C, tile, tile), tile-major.
    """
    h, w = z.shape[-2:]
    if tile <= 0 or (h <= tile and w <= tile):
        return fn(z)
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap must be in [0, tile={tile}), got {overlap}")
    th, tw = min(tile, h), min(tile, w)
    weight = _tile_weights(th, tw, z.device)
    out = torch.zeros(z.shape, dtype=torch.float32, device=z.device)
    wsum = torch.zeros((1, 1, h, w), dtype=torch.float32, device=z.device)
    boxes = [(y, x) for y in tile_starts(h, th, overlap) for x in tile_starts(w, tw, overlap)]
    start = 0
    for k in tile_groups(len(boxes), batch):
        group, start = boxes[start : start + k], start + k
        tiles = [z[..., y : y + th, x : x + tw] for y, x in group]
        preds = fn(tiles[0] if k == 1 else torch.cat(tiles)).chunk(k)
        for (y, x), pred in zip(group, preds):
            out[..., y : y + th, x : x + tw] += pred.float() * weight
            wsum[..., y : y + th, x : x + tw] += weight
    return (out / wsum).to(z.dtype)
