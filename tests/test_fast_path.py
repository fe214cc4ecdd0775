"""The opt-in fast path (TVTPipeline.enable_fast_inference): compiled, channels_last, batched tiles and an SDPA
order give the eager output within TOL; off, nothing changes; the command lines pass their keys through; bounded
tiles are chosen by UNet MACs; folders run in batches.

torch.compile runs here with a recording backend (dynamo captures each compiled part; no code generation, which
takes minutes for the tiny UNet on a CPU) and with inductor on a one-conv UNet; the full inductor check is slow."""
import logging
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler, UNet2DConditionModel
from PIL import Image
from torch import nn
from torch.nn.attention import SDPBackend

import tvt_scripts.eval as eval_cli
import tvt_scripts.infer as infer_cli
from tvt.errors import InputError
from tvt.models.ce_unet import ce_unet_config
from tvt.models.generator import COMPILED_PARTS, Tiling, sdpa_order
from tvt.models.sd21 import SD21_SCHEDULER_CONFIG, SD21_UNET_CONFIG, SD21_VAE_CONFIG
from tvt.models.vae import build_vae_d4
from tvt.inference import TVTPipeline, super_resolve_folder
from tvt.inference.base import _SRPipeline

TOL = 1e-4  # fp32 images in [0, 1]: channels_last kernels, batched tiles and compiled graphs round differently
# latent 32 x 32 (TVT: 128 px at x1) in 3 x 3 tiles of 16 overlapping by 4, three per UNet call: one UNet shape
TILED = dict(upscale=1, tile_size=64, tile_overlap=16, vae_tile_size=0, output_type="pt")


@pytest.fixture(scope="module")
def tvt_pipe(tiny_sd, tiny_vae_d4):
    return TVTPipeline.from_sd(tiny_sd, vae_d4=tiny_vae_d4, architecture="tvt", process_size=0)


class Recorder:
    """A torch.compile backend that keeps the captured graphs and runs them as captured."""

    def __init__(self):
        self.graphs = []

    def __call__(self, gm, example_inputs):
        self.graphs.append(gm)
        return gm.forward


def _no_fast_path_left(pipe):
    gen = pipe.generator
    assert pipe.fast is None and gen.compiled == () and gen.sdpa_backend is None
    assert gen.memory_format == torch.preserve_format
    assert all("forward" not in gen.get_submodule(name).__dict__ for name in COMPILED_PARTS)
    assert pipe.unet.conv_in.weight.is_contiguous() and pipe.vae.encoder.conv_in.weight.is_contiguous()


def test_fast_path_equals_eager_and_switches_off(tvt_pipe):
    x = torch.rand(1, 3, 128, 128)
    _no_fast_path_left(tvt_pipe)  # a new pipeline: the fast path is off
    eager = tvt_pipe(x, **TILED).images
    calls = []
    hook = tvt_pipe.unet.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
    backend = Recorder()
    try:
        tvt_pipe.enable_fast_inference(backend=backend, tile_batch=3, sdpa_backend="flash")
        assert tvt_pipe.generator.compiled == COMPILED_PARTS
        assert tvt_pipe.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
        fast = tvt_pipe(x, **TILED).images
        captured = len(backend.graphs)
        again = tvt_pipe(x, **TILED).images
    finally:
        hook.remove()
        tvt_pipe.disable_fast_inference()
    assert calls == [3, 3, 3] * 2  # 9 tiles in 3 calls of 3, twice
    assert captured >= len(COMPILED_PARTS) and len(backend.graphs) == captured  # each part captured, no recompile
    assert (fast - eager).abs().max() <= TOL and torch.equal(again, fast)
    _no_fast_path_left(tvt_pipe)
    assert torch.equal(tvt_pipe(x, **TILED).images, eager)  # off again: the eager output to the bit


def test_inductor_compiles_the_unet(osediff_stand_in):
    """Code generation by inductor, on the smallest part that shows it: a one-conv UNet."""
    pipe = osediff_stand_in
    x = torch.rand(1, 3, 64, 64)
    eager = pipe(x, **TILED).images
    try:
        pipe.enable_fast_inference(compile=("unet",), backend="inductor", channels_last=False)
        assert pipe.generator.compiled == ("unet",)
        fast = pipe(x, **TILED).images
    finally:
        pipe.disable_fast_inference()
    assert (fast - eager).abs().max() <= TOL


@pytest.fixture(scope="module")
def osediff_stand_in(tiny_sd):
    """The tiny OSEDiff pipeline around a one-conv UNet (diffusers' call signature)."""
    p = TVTPipeline.from_sd(tiny_sd, architecture="osediff", process_size=0)
    return TVTPipeline.from_components(p.vae, ConvUNet(), p.text_encoder, p.tokenizer, p.scheduler, process_size=0)


class ConvUNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.config = SimpleNamespace(block_out_channels=(1, 1, 1, 1))

    @property
    def dtype(self):
        return self.conv.weight.dtype

    def forward(self, z, t, encoder_hidden_states):
        return SimpleNamespace(sample=self.conv(z))


@pytest.mark.slow
def test_inductor_fast_path_equals_eager(tiny_sd, tiny_vae_d4):
    """The whole fast path with inductor on the tiny TVT pipeline (several minutes of compilation on a CPU)."""
    pipe = TVTPipeline.from_sd(tiny_sd, vae_d4=tiny_vae_d4, architecture="tvt", process_size=0)
    x = torch.rand(1, 3, 128, 128)
    eager = pipe(x, **TILED).images
    fast = pipe.enable_fast_inference(tile_batch=3)(x, **TILED).images
    assert (fast - eager).abs().max() <= TOL


def test_posterior_noise_drawn_first_is_latent_dist_sample(tvt_pipe):
    """encode draws the noise before the encoder runs (no wait between stages): the values of diffusers' sample."""
    gen, vae = tvt_pipe.generator, tvt_pipe.vae
    x = torch.rand(2, 3, 32, 48) * 2 - 1
    seeded = lambda: [torch.Generator().manual_seed(s) for s in (5, 6)]  # noqa: E731
    with torch.no_grad():
        z = gen.encode(x, seeded())
        ref = vae.encode(x).latent_dist.sample(seeded()) * vae.config.scaling_factor
    assert torch.equal(z, ref)


def test_defaults_are_untouched(tvt_pipe, tmp_path):
    """The fast path is opt-in. A new pipeline runs eager (nothing compiled, contiguous weights, torch's SDPA order),
    with the official tiles (latent 192 / 64, one tile per UNet call) even on a latent where the bounded tiles would
    cost less; a folder runs one image per call; a bicubic pipeline accepts enable_fast_inference and does nothing."""
    pipe = tvt_pipe
    _no_fast_path_left(pipe)
    # bounded tiles would pick 96 / 16 here (test_bounded_tiles_bound_the_first_level_and_are_used_where_they_cost_less)
    assert pipe.tiling_for(1024, 1024) == Tiling(192, 64, 1, 768)
    calls = []
    pipe_call = pipe.__call__

    def counting(images, **kwargs):
        calls.append(len(images) if isinstance(images, torch.Tensor) and images.ndim == 4 else 1)
        return pipe_call(images, **kwargs)

    for i in range(3):
        Image.fromarray((np.random.default_rng(i).random((12, 12, 3)) * 255).astype(np.uint8)).save(tmp_path / f"{i}.png")
    assert len(super_resolve_folder(counting, tmp_path, tmp_path / "out", upscale=1, progress=False).written) == 3
    assert calls == [1, 1, 1]
    bicubic = TVTPipeline.from_pretrained("bicubic")
    x = torch.rand(1, 3, 8, 8)
    assert isinstance(bicubic, _SRPipeline) and bicubic.enable_fast_inference(compile=True) is bicubic
    assert torch.equal(bicubic(x, output_type="pt").images, TVTPipeline.from_pretrained("bicubic")(x, output_type="pt").images)


def test_sdpa_order_and_logged_fallback(caplog):
    with caplog.at_level(logging.INFO, logger="tvt.models.generator"):
        assert sdpa_order("cudnn", "cpu", torch.float32) is None  # not on a CPU: torch's order, logged
    assert "SDPA backend cudnn does not run on cpu" in caplog.text
    assert sdpa_order("auto", "cpu", torch.float32) is None
    order = sdpa_order("flash", "cpu", torch.bfloat16)
    assert order[0] == SDPBackend.FLASH_ATTENTION and order[-1] == SDPBackend.MATH  # the rest behind it


def test_dtypes_and_option_errors(tiny_sd):
    """bf16: the whole generator, VAE included, unless upcast_vae; fp16 keeps the VAE in fp32."""
    pipe = TVTPipeline.from_sd(tiny_sd, architecture="osediff", process_size=0)
    kw = dict(compile=False, channels_last=False)
    pipe.enable_fast_inference(dtype="bf16", **kw)
    assert pipe.unet.dtype == pipe.vae.dtype == torch.bfloat16
    out = pipe(torch.rand(1, 3, 32, 32), upscale=1, output_type="pt").images
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    pipe.enable_fast_inference(dtype="bf16", upcast_vae=True, **kw)
    assert (pipe.unet.dtype, pipe.vae.dtype) == (torch.bfloat16, torch.float32)
    pipe.enable_fast_inference(dtype="fp16", **kw)
    assert (pipe.unet.dtype, pipe.vae.dtype) == (torch.float16, torch.float32)
    for bad in (dict(mode="fastest"), dict(tile_batch=0), dict(dtype="fp8")):
        with pytest.raises(InputError):
            pipe.enable_fast_inference(**kw, **bad)
    with pytest.raises(ValueError, match="sdpa_backend"):
        pipe.enable_fast_inference(sdpa_backend="triton", **kw)
    with pytest.raises(ValueError, match="parts must be among"):
        pipe.enable_fast_inference(compile=("text_encoder",), channels_last=False)


# ---------------------------------------------------------------------------------------------
# bounded tiles: chosen by UNet MACs, at the real shapes (meta device: no weights)
# ---------------------------------------------------------------------------------------------
def _meta_pipeline(arch: str) -> TVTPipeline:
    with torch.device("meta"):
        if arch == "tvt":
            vae, unet = build_vae_d4("d4"), UNet2DConditionModel(**ce_unet_config(SD21_UNET_CONFIG))
        else:
            from diffusers import AutoencoderKL

            vae, unet = AutoencoderKL(**SD21_VAE_CONFIG), UNet2DConditionModel(**SD21_UNET_CONFIG)
    return TVTPipeline(vae, unet, nn.Identity(), None, DDPMScheduler(**SD21_SCHEDULER_CONFIG))


def test_bounded_tiles_bound_the_first_level_and_are_used_where_they_cost_less():
    from tvt.flops import macs_by_op

    tvt, osediff = _meta_pipeline("tvt"), _meta_pipeline("osediff")
    assert tvt.bounded_tiling() == (96, 16) and osediff.bounded_tiling() == (48, 8)  # 384 / 64 output px
    # the MAC model (a hw + b (hw)^2, fitted at two sizes) is the count at a third
    with torch.device("meta"):
        z, c = torch.zeros(1, 4, 80, 112), torch.zeros(1, 77, 1024)
        counted = sum(macs_by_op(tvt.unet, z, torch.tensor([1]), encoder_hidden_states=c).values())
    assert abs(tvt.unet_macs(80, 112) / counted - 1) < 1e-3
    for pipe in (tvt, osediff):
        pipe.enable_fast_inference(compile=False, channels_last=False, sdpa_backend=None, bounded_tiles=True)
    # 512 px: the whole latent (the official tiling) costs least; 1024 px: 3 x 3 bounded tiles of 9,216 tokens,
    # under a third of the whole 256 x 256 latent's MACs (65,536 first-level tokens)
    assert tvt.latent_tiling(None, None, 4, latent_size=(128, 128)) == (192, 64)
    assert tvt.latent_tiling(None, None, 4, latent_size=(256, 256)) == (96, 16)
    assert tvt.tiling_macs(256, 256, 96, 16) < tvt.tiling_macs(256, 256, 0, 0) / 2
    assert tvt.latent_tiling(48, 8, 4, latent_size=(256, 256)) == (48, 8)  # given tiles are kept
    tile, overlap = osediff.latent_tiling(None, None, 4, latent_size=(128, 128))
    assert osediff.tiling_macs(128, 128, tile, overlap) <= osediff.tiling_macs(128, 128, 96, 32)
    assert tvt.tiling_for(1024, 1024) == Tiling(96, 16, 16, 1024)  # the VAE runs whole up to 1024 px
    tvt.disable_fast_inference()
    assert tvt.latent_tiling(None, None, 4, latent_size=(256, 256)) == (192, 64)  # off: the official tiles


# ---------------------------------------------------------------------------------------------
# folders in batches, and the command lines
# ---------------------------------------------------------------------------------------------
def test_folder_in_batches_equals_one_by_one(tvt_pipe, tmp_path, caplog):
    src = tmp_path / "in"
    src.mkdir()
    torch.manual_seed(0)
    for i, size in enumerate([(16, 12)] * 3 + [(12, 16)] * 2 + [(4, 4)]):  # two sizes and one too small
        arr = (torch.rand(size[1], size[0], 3) * 255).to(torch.uint8).numpy()
        Image.fromarray(arr).save(src / f"im{i}.png")
    one = super_resolve_folder(tvt_pipe, src, tmp_path / "one", upscale=2, progress=False)
    batched = super_resolve_folder(tvt_pipe, src, tmp_path / "batched", upscale=2, progress=False, batch_size=4)
    assert [p.name for p in batched.written] == [p.name for p in one.written] and len(one.written) == 5
    assert [(p.name, r) for p, r in batched.failed] == [(p.name, r) for p, r in one.failed] == [
        ("im5.png", "input 4x4 is too small: both sides must be >= 8 pixels")]
    for a, b in zip(one.written, batched.written):
        diff = np.abs(np.asarray(Image.open(a), dtype=int) - np.asarray(Image.open(b), dtype=int))
        assert diff.max() <= 1  # 8-bit outputs: equal up to one level where rounding falls differently


def test_cli_fast_path_keys_reach_the_pipeline(monkeypatch, tmp_path):
    seen = {}
    load = TVTPipeline.from_pretrained

    def from_pretrained(model, **kw):
        seen["dtype"] = kw["dtype"]
        return load(model, **kw)

    monkeypatch.setattr(TVTPipeline, "from_pretrained", from_pretrained)
    monkeypatch.setattr(_SRPipeline, "enable_fast_inference", lambda self, **kw: seen.setdefault("fast", kw) and self)

    def folder(pipe, inputs, out_dir, **kw):
        seen["folder"] = kw
        return SimpleNamespace(folder=out_dir, written=[], skipped=[], failed=[], seconds=0.0)

    monkeypatch.setattr(infer_cli, "super_resolve_folder", folder)
    argv = ["-i", str(tmp_path), "-o", str(tmp_path / "o"), "--model", "bicubic", "--batch_size", "8", "--compile",
            "--compile_mode", "reduce-overhead", "--channels_last", "--bounded_tiles"]
    assert infer_cli.main(argv) == 0
    fast = dict(compile=True, mode="reduce-overhead", channels_last=True, bounded_tiles=True)
    assert seen["fast"] == fast and seen["folder"]["batch_size"] == 8 and seen["dtype"] == "fp32"

    seen.clear()  # without the keys: no fast path
    assert infer_cli.main(argv[:6]) == 0 and "fast" not in seen and seen["folder"]["batch_size"] == 1
    assert infer_cli.main([*argv[:6], "--compile_mode", "fastest"]) == 2  # a user error, one line

    import tvt.inference

    monkeypatch.setattr(tvt.inference, "super_resolve_folder", folder)
    monkeypatch.setattr(eval_cli, "paired_dirs", lambda dataset, root: (tmp_path, tmp_path, 4))
    monkeypatch.setattr(eval_cli, "evaluate_folders", lambda *a: (_ for _ in ()).throw(SystemExit(0)))
    seen.clear()
    with pytest.raises(SystemExit):
        eval_cli.main(["--model", "bicubic", "--dataset", "RealSR", "--out", str(tmp_path / "e"), "--dtype", "bf16",
                       *argv[6:]])
    assert seen["fast"] == fast and seen["folder"]["batch_size"] == 8 and seen["dtype"] == "bf16"
