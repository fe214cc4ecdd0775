import json
import logging
import os
import stat
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import tvt.export as export
from tvt.errors import ImageSizeError, InputError, MissingWeightsError
from tvt.inference import BicubicPipeline, TVTPipeline
from tvt.inference.tiling import BOUNDED_OVERLAP_OUTPUT_PX, BOUNDED_TILE_OUTPUT_PX
from tvt.models.ce_unet import is_fully_trained
from tvt.models.generator import Tiling, gaussian_weights, tile_starts, tiled_apply
from tvt.models.lora import LORA_WEIGHT_NAME, has_unmerged_lora
from tvt.prompts import PromptSpec


# process_size=0: the small test images run at their own size (the official 512 is tested on its own below)
@pytest.fixture(scope="module")
def tvt_pipe(tiny_sd, tiny_vae_d4):
    return TVTPipeline.from_sd(tiny_sd, vae_d4=tiny_vae_d4, architecture="tvt", process_size=0)


@pytest.fixture(scope="module")
def osediff_pipe(tiny_sd):
    return TVTPipeline.from_sd(tiny_sd, architecture="osediff", process_size=0)


class PixelUNet(nn.Module):
    """A UNet stand-in: a kxk conv on the latent (k=1: spatially equivariant), same call signature as diffusers'.
    ``levels``: 4 divides the latent by 8 as SD's UNet, 5 by 16 as the CE-UNet. ``calls`` counts its evaluations
    (one per latent tile)."""

    def __init__(self, k=1, levels=4):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(4, 4, k, padding=k // 2)
        self.config = SimpleNamespace(block_out_channels=(1,) * levels)
        self.calls = 0

    @property
    def dtype(self):
        return self.conv.weight.dtype

    def forward(self, z, t, encoder_hidden_states):
        self.calls += 1
        return SimpleNamespace(sample=self.conv(z))


# ---------------------------------------------------------------------------------------------
# sizes, inputs, limits
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["tvt", "osediff"])
@pytest.mark.parametrize("h, w, upscale", [(19, 26, 4), (16, 16, 2), (33, 21, 2), (24, 40, 3)])
def test_output_size_any_input(request, arch, h, w, upscale):
    pipe = request.getfixturevalue(f"{arch}_pipe")
    out = pipe(torch.rand(3, h, w), upscale=upscale, output_type="pt").images
    assert out.shape == (1, 3, h * upscale, w * upscale)
    assert out.min() >= 0 and out.max() <= 1 and torch.isfinite(out).all()


def test_batch_list_and_modes(tvt_pipe, caplog):
    batch = torch.rand(2, 3, 16, 20)
    out = tvt_pipe(batch, upscale=2, output_type="np").images  # one batched forward
    assert out.shape == (2, 32, 40, 3) and out.dtype == np.float32
    one_by_one = tvt_pipe(list(batch), upscale=2, output_type="np").images
    np.testing.assert_allclose(out, one_by_one, atol=1e-5)
    gray = Image.fromarray((np.random.rand(12, 10) * 255).astype(np.uint8), "L")
    rgba = Image.fromarray((np.random.rand(8, 14, 4) * 255).astype(np.uint8), "RGBA")
    with caplog.at_level(logging.INFO, logger="tvt.io"):
        imgs = tvt_pipe([gray, rgba], upscale=2, color_fix="wavelet").images
    assert [im.size for im in imgs] == [(20, 24), (28, 16)] and all(im.mode == "RGB" for im in imgs)
    assert "RGBA image, alpha dropped" in caplog.text  # the choice is stated


def test_size_and_upscale_limits(tvt_pipe):
    with pytest.raises(ImageSizeError, match="too small"):
        tvt_pipe(torch.rand(3, 5, 40))
    with pytest.raises(ImageSizeError, match="too small: both sides must be >= 8"):
        tvt_pipe(torch.rand(3, 1, 1))  # a 1x1 image
    tvt_pipe.max_output_pixels = 64 * 64
    try:
        with pytest.raises(ImageSizeError, match="exceeds max_output_pixels"):
            tvt_pipe(torch.rand(3, 20, 20), upscale=4)
    finally:
        tvt_pipe.max_output_pixels = 8192 * 8192
    for upscale in (0, 0.5, 5):  # the model restores bicubic x4 inputs
        with pytest.raises(InputError, match="upscale must be between 1 and 4"):
            tvt_pipe(torch.rand(3, 8, 8), upscale=upscale)


def test_bicubic_baseline():
    pipe = TVTPipeline.from_pretrained("bicubic")
    assert isinstance(pipe, BicubicPipeline)
    x = torch.rand(1, 3, 13, 17)
    out = pipe(x, upscale=4, output_type="pt").images
    # PIL's bicubic on the 8-bit image, as the official inference upsamples its input
    ref = Image.fromarray((x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).resize((68, 52), Image.BICUBIC)
    torch.testing.assert_close(out[0], torch.from_numpy(np.asarray(ref)).permute(2, 0, 1).float() / 255)
    torch_pipe = TVTPipeline.from_pretrained("bicubic", upsampling="torch")
    torch.testing.assert_close(torch_pipe(x, upscale=4, output_type="pt").images,
                               F.interpolate(x, size=(52, 68), mode="bicubic", align_corners=False).clamp(0, 1))


def test_small_inputs_run_at_process_size_and_come_back_at_the_asked_size(tiny_sd, tiny_vae_d4):
    """Official inference enlarges inputs whose x4 output is under 512 px on the short side; we also resize
    the result back to the asked size (the official code drops the result of that resize)."""
    pipe = TVTPipeline.from_sd(tiny_sd, vae_d4=tiny_vae_d4, architecture="tvt", process_size=64)
    x = torch.rand(1, 3, 10, 16)
    out = pipe(x, upscale=4, color_fix=None, output_type="pt").images
    assert out.shape == (1, 3, 40, 64)
    big = pipe.upsample(x, (64, 102))  # what the model saw: the input at the process size
    pipe.process_size = 0
    at_work = pipe(big, upscale=1, color_fix=None, output_type="pt").images
    torch.testing.assert_close(out, pipe.upsample(at_work, (40, 64)))


# ---------------------------------------------------------------------------------------------
# tiling
# ---------------------------------------------------------------------------------------------
def test_default_tiles_leave_an_image_within_768_px_whole(tvt_pipe, osediff_pipe):
    """The real tiny models: the default tiles are 768 output px (TVT latent 192, OSEDiff 96; the VAE the same), so a
    64 x 256 output runs whole, bit for bit the untiled code; a tile of 192 output px (the latent size read as
    pixels) would cut it, and does: the seams change the output."""
    x = torch.rand(1, 3, 64, 256)
    for pipe in (tvt_pipe, osediff_pipe):
        untiled = pipe(x, upscale=1, tile_size=0, vae_tile_size=0, output_type="pt").images
        assert torch.equal(pipe(x, upscale=1, output_type="pt").images, untiled)
        cut = pipe(x, upscale=1, tile_size=192 // pipe.vae_factor, vae_tile_size=192, output_type="pt").images
        assert (cut - untiled).abs().max() > 1e-3


def test_blend_weights_and_equivariant_model():
    assert tile_starts(10, 16, 4) == [0] and tile_starts(40, 16, 6) == [0, 10, 20, 24]
    w = gaussian_weights(16, 12)
    assert w.shape == (1, 1, 16, 12) and w.min() > 0 and torch.equal(w, w.flip(-1))
    z = torch.randn(1, 4, 50, 70)
    # normalised weights: a constant field stays constant
    torch.testing.assert_close(tiled_apply(torch.ones_like, z, 16, 6), torch.ones_like(z))
    conv = PixelUNet(k=1).conv
    with torch.no_grad():
        torch.testing.assert_close(tiled_apply(conv, z, 16, 6), conv(z), atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def pixel_pipes(osediff_pipe, tvt_pipe):
    """The tiny pipelines' VAE and text parts around a 1x1-conv UNet (k=1) and a 3x3 one (k=3): OSEDiff's VAE-D8
    with an SD-UNet-shaped stand-in, TVT's VAE-D4 with a CE-UNet-shaped one (latent sides multiples of 16)."""
    return {(arch, k): TVTPipeline.from_components(p.vae, PixelUNet(k, levels), p.text_encoder, p.tokenizer,
                                                   p.scheduler, process_size=0)
            for arch, p, levels in (("osediff", osediff_pipe, 4), ("tvt", tvt_pipe, 5)) for k in (1, 3)}


# image (h, w) at x1, tile size / overlap in input px, the latent grid -> latent tile, overlap, tiles per side
SEAM_CASES = {
    # padded to the stride 64: latent 16 x 16, tiles of 8 (the UNet factor) overlapping by 2
    "osediff": ((96, 112), 32, 12, (16, 16), 8, 2, (3, 3)),
    # the bounded tiles (384 / 64 px: latent 96 / 16, 9,216 first-level tokens) on a 128 x 192 latent
    "tvt": ((512, 768), BOUNDED_TILE_OUTPUT_PX, BOUNDED_OVERLAP_OUTPUT_PX, (128, 192), 96, 16, (2, 3)),
}


@pytest.mark.parametrize("arch", sorted(SEAM_CASES))
def test_tiled_equals_untiled_across_tiles(pixel_pipes, arch):
    """Through the pipeline, on an image of several latent tiles: a spatially equivariant UNet gives the untiled
    result (the blend is a per-pixel convex combination), so the tiles are placed, weighted and cropped right."""
    pipe = pixel_pipes[arch, 1]
    size, tile_size, tile_overlap, (lh, lw), tile, overlap, (ny, nx) = SEAM_CASES[arch]
    x = torch.rand(1, 3, *size)
    kw = dict(upscale=1, vae_tile_size=0, color_fix=None, output_type="pt")
    assert pipe.latent_tiling(tile_size, tile_overlap, 1) == (tile, overlap)
    pipe.unet.calls = 0
    untiled = pipe(x, tile_size=0, **kw).images
    assert pipe.unet.calls == 1
    tiled = pipe(x, tile_size=tile_size, tile_overlap=tile_overlap, **kw).images
    assert (len(tile_starts(lh, tile, overlap)), len(tile_starts(lw, tile, overlap))) == (ny, nx)
    assert pipe.unet.calls - 1 == ny * nx
    torch.testing.assert_close(tiled, untiled, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", sorted(SEAM_CASES))
def test_no_seams_on_smooth_image(pixel_pipes, arch):
    """A 3x3 UNet (wrong at tile borders, like any real UNet) shows no step at the borders because the Gaussian
    blend hides tile edges (OSEDiff case with uniform blending instead of Gaussian: 0.26)."""
    pipe = pixel_pipes[arch, 3]
    size, tile_size, tile_overlap = SEAM_CASES[arch][:3]
    smooth = F.interpolate(torch.rand(1, 3, 4, 4), size=size, mode="bicubic", align_corners=False).clamp(0, 1)
    kw = dict(upscale=1, vae_tile_size=0, color_fix=None, output_type="pt")
    untiled = pipe(smooth, tile_size=0, **kw).images
    tiled = pipe(smooth, tile_size=tile_size, tile_overlap=tile_overlap, **kw).images  # the tiles above
    assert tiled.shape == untiled.shape == (1, 3, *size)
    assert (tiled - untiled).abs().max() <= 0.01, (tiled - untiled).abs().max()


def test_tiling_is_per_call_and_calls_are_reentrant(osediff_pipe, monkeypatch):
    """Tiling is an argument of each call, not state: a call with other tiles made in the middle of another (from
    inside its denoise, and from another thread) changes neither; each equals its own result run alone, and no
    call leaves tiling set on the generator or the VAE."""
    import threading

    pipe, x = osediff_pipe, torch.rand(1, 3, 12, 16)
    a = dict(upscale=4, tile_size=16, tile_overlap=4, vae_tile_size=32, output_type="pt")  # latent 8/2, VAE 32 px tiles
    b = dict(upscale=4, tile_size=0, vae_tile_size=0, output_type="pt")  # whole
    assert pipe.tiling_for(48, 64, 4, 16, 4, 32) == Tiling(8, 2, 1, 32)
    vae_state = (pipe.vae.use_tiling, pipe.vae.tile_sample_min_size)
    alone_a, alone_b = pipe(x, **a).images, pipe(x, **b).images
    assert (alone_a - alone_b).abs().max() > 1e-3  # the tiles matter
    assert (pipe.vae.use_tiling, pipe.vae.tile_sample_min_size) == vae_state  # nothing left behind

    inner, denoise = {}, pipe.generator.denoise

    def denoise_with_a_call_inside(*args, **kwargs):
        if not inner:
            inner["b"] = None  # once: the call below goes through here too
            inner["b"] = pipe(x, **b).images
        return denoise(*args, **kwargs)

    monkeypatch.setattr(pipe.generator, "denoise", denoise_with_a_call_inside)
    torch.testing.assert_close(pipe(x, **a).images, alone_a, atol=1e-6, rtol=0)
    torch.testing.assert_close(inner["b"], alone_b, atol=1e-6, rtol=0)
    monkeypatch.undo()

    outs = {"a": [], "b": []}
    threads = [threading.Thread(target=lambda k, kw: [outs[k].append(pipe(x, **kw).images) for _ in range(2)],
                                args=(k, kw)) for k, kw in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for out in outs["a"]:
        torch.testing.assert_close(out, alone_a, atol=1e-6, rtol=0)
    for out in outs["b"]:
        torch.testing.assert_close(out, alone_b, atol=1e-6, rtol=0)


def test_tile_sizes_are_input_pixels(tvt_pipe, osediff_pipe):
    # defaults cover 768/256 output px: official TVT latent 192/64, OSEDiff 96/32
    assert tvt_pipe.latent_tiling(None, None, 4) == (192, 64)
    assert osediff_pipe.latent_tiling(None, None, 4) == (96, 32)
    # TVT (f=4) at x4: input px == latent px; OSEDiff (f=8): half
    assert tvt_pipe.latent_tiling(96, 32, 4) == (96, 32)
    assert osediff_pipe.latent_tiling(96, 32, 4) == (48, 16)
    assert tvt_pipe.latent_tiling(0, None, 4) == (0, 0)
    with pytest.raises(ValueError, match="smaller than the tile"):
        tvt_pipe.latent_tiling(32, 64, 4)


# ---------------------------------------------------------------------------------------------
# precision, export, loading
# ---------------------------------------------------------------------------------------------
def test_fp16_keeps_vae_fp32(tiny_sd):
    pipe = TVTPipeline.from_sd(tiny_sd, architecture="osediff").to(dtype=torch.float16)
    assert pipe.unet.dtype == torch.float16 and pipe.vae.dtype == torch.float32
    assert pipe.generator.alphas_cumprod.dtype == torch.float32
    pipe.to(dtype=torch.bfloat16)
    assert pipe.vae.dtype == torch.bfloat16


def test_save_pretrained_round_trip_is_bitwise(tvt_pipe, tmp_path):
    x = torch.rand(1, 3, 24, 20)
    ref = tvt_pipe(x, output_type="pt").images
    tvt_pipe.save_pretrained(tmp_path / "export")
    cfg = json.loads((tmp_path / "export" / "tvt_config.json").read_text())
    assert cfg["format"] == "tvt-export-v2" and cfg["architecture"] == "tvt" and cfg["timestep"] == 1
    loaded = TVTPipeline.from_pretrained(tmp_path / "export", process_size=0)
    assert loaded.architecture == "tvt"
    assert torch.equal(loaded(x, output_type="pt").images, ref)
    # an export without its timestep is refused by name: no default (the official inference.py's argparse 999, or
    # 1) is guessed for it
    del cfg["timestep"]
    (tmp_path / "export" / "tvt_config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="no integer 'timestep'.*TVT's is 1"):
        TVTPipeline.from_pretrained(tmp_path / "export")


def _train_like(pipe, arch):
    """What ISR training leaves on the models (tvt.models.lora): trained full layers (TVT), LoRA with non-zero B
    on the UNet and on the VAE encoder."""
    from peft import LoraConfig

    from tvt.models.lora import add_ce_unet_lora, add_vae_encoder_lora

    unet, vae = pipe.unet, pipe.vae
    torch.manual_seed(1)
    if arch == "tvt":
        with torch.no_grad():
            for name, p in unet.named_parameters():
                if is_fully_trained(name):
                    p.add_(0.05 * torch.randn_like(p))
        add_ce_unet_lora(unet, rank=4)
        add_vae_encoder_lora(vae, rank=2)
    else:
        unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False,
                                    target_modules=["to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2"]))
        vae.add_adapter(LoraConfig(r=2, lora_alpha=2, init_lora_weights=False,
                                   target_modules=["encoder.down_blocks.0.resnets.0.conv1"]))
    with torch.no_grad():
        for name, p in [*unet.named_parameters(), *vae.named_parameters()]:
            if "lora_B" in name:
                p.normal_(0, 0.05)


def _generate(pipe, x, emb):
    g = pipe.generator
    with torch.no_grad():
        return g.decode(g.denoise(g.encode(x, torch.Generator().manual_seed(0)), emb))


@pytest.fixture(scope="module", params=["tvt", "osediff"])
def trained(request, tiny_sd, tiny_vae_d4):
    """(architecture, a pipeline whose models look trained, an input in [-1, 1], its output)."""
    pipe = TVTPipeline.from_sd(tiny_sd, vae_d4=tiny_vae_d4, architecture=request.param)
    _train_like(pipe, request.param)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    return request.param, pipe, x, _generate(pipe, x, pipe.encode_prompt(""))


def test_export_with_lora_matches_training_model(trained, tiny_sd, tmp_path, monkeypatch):
    """The training-side export (LoRA + fully trained layers + VAE-encoder LoRA) reloads to the same model, from
    any working folder; the folder is in diffusers' LoRA format and has normal permissions."""
    arch, pipe, x, ref = trained
    spec = PromptSpec(tags="sharp", template="{tags}")
    monkeypatch.chdir(tiny_sd.parent)  # the base model given as a relative path, as on a command line
    export.save_tvt_export(tmp_path / "exp", ce_unet=pipe.unet, vae=pipe.vae, base_model=tiny_sd.name, prompt=spec,
                           architecture=arch, extra={"step": 10})
    monkeypatch.chdir(tmp_path)
    names = {p.name for p in (tmp_path / "exp").iterdir()}
    assert names == {"tvt_config.json", LORA_WEIGHT_NAME, "vae_d4" if arch == "tvt" else "vae"} | (
        {"ce_unet_trainable.safetensors"} if arch == "tvt" else set())
    assert not any(n.startswith(".") for n in (p.name for p in tmp_path.iterdir()))  # no temp folders left
    cfg = json.loads((tmp_path / "exp" / "tvt_config.json").read_text())
    assert set(cfg) == {"format", "architecture", "timestep", "base_model", "prompt", "extra", "files"}
    assert cfg["base_model"] == str(tiny_sd.resolve()) and cfg["extra"] == {"step": 10}
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "exp").stat().st_mode) == 0o777 & ~umask  # not mkdtemp's 0700

    loaded = TVTPipeline.from_pretrained(tmp_path / "exp")
    assert loaded.prompt_spec == spec and loaded.prompts_for(x[:, :, :8, :8]) == ["sharp"] and loaded.architecture == arch
    assert not has_unmerged_lora(loaded.unet)  # merged on load
    torch.testing.assert_close(_generate(loaded, x, loaded.encode_prompt("")), ref, atol=1e-4, rtol=0)


def test_diffusers_loads_our_lora_file(trained, tiny_sd, tmp_path):
    """Users' tools read the export's LoRA: diffusers' own loaders give the trained UNet. OSEDiff architecture:
    a StableDiffusionPipeline's load_lora_weights; TVT: the CE-UNet's load_lora_adapter."""
    from diffusers import StableDiffusionPipeline

    from tvt.models.ce_unet import build_ce_unet_from_sd, load_sd_unet
    from tvt.models.lora import load_fully_trained

    arch, pipe, _, _ = trained
    export.save_tvt_export(tmp_path / "exp", ce_unet=pipe.unet, vae=pipe.vae, base_model=str(tiny_sd), architecture=arch)
    if arch == "osediff":
        sd_pipe = StableDiffusionPipeline.from_pretrained(tiny_sd, safety_checker=None, feature_extractor=None,
                                                          requires_safety_checker=False)
        sd_pipe.load_lora_weights(tmp_path / "exp")
        unet = sd_pipe.unet
    else:
        unet = build_ce_unet_from_sd(load_sd_unet(tiny_sd))
        load_fully_trained(unet, tmp_path / "exp" / "ce_unet_trainable.safetensors")
        unet.load_lora_adapter(str(tmp_path / "exp"), prefix="unet", weight_name=LORA_WEIGHT_NAME)
    assert next(iter(unet.peft_config.values())).r == 4
    z, emb, t = torch.randn(1, 4, 16, 16), torch.randn(1, 77, 32), torch.tensor([1])
    with torch.no_grad():
        torch.testing.assert_close(unet(z, t, encoder_hidden_states=emb).sample,
                                   pipe.unet(z, t, encoder_hidden_states=emb).sample, atol=1e-6, rtol=0)


@pytest.mark.parametrize("trained", ["tvt"], indirect=True)
def test_v1_export_still_loads(trained, tiny_sd, tmp_path):
    """An export in the "tvt-export-v1" layout (peft folder ce_unet_lora/, format v1 config) loads unchanged."""
    import copy

    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    from tvt.models.lora import fully_trained_state_dict, merge_lora

    _, pipe, x, ref = trained
    exp = tmp_path / "v1"
    merge_lora(copy.deepcopy(pipe.vae)).save_pretrained(exp / "vae_d4")
    (exp / "ce_unet_lora").mkdir(parents=True)
    pipe.unet.peft_config["default"].save_pretrained(exp / "ce_unet_lora")
    save_file({k: v.contiguous() for k, v in get_peft_model_state_dict(pipe.unet).items()},
              exp / "ce_unet_lora" / "adapter_model.safetensors")
    save_file(fully_trained_state_dict(pipe.unet), exp / "ce_unet_trainable.safetensors")
    (exp / "tvt_config.json").write_text(json.dumps({
        "format": "tvt-export-v1", "architecture": "tvt", "base_model": str(tiny_sd), "vae": "vae_d4",
        "vae_class": "AutoencoderKLD4", "timestep": 1, "unet": None, "encoder_lora": True,
        "lora": {"rank": 4, "alpha": 8.0, "adapters": ["default"], "merged": False},
        "prompt": {"positive": "clean", "negative": ""}, "unet_config": None, "extra": {}}))
    loaded = TVTPipeline.from_pretrained(exp)
    assert loaded.prompt_spec.text("") == "clean"  # a v1 prompt: fixed text
    torch.testing.assert_close(_generate(loaded, x, loaded.encode_prompt("")), ref, atol=1e-4, rtol=0)


def test_missing_weights_are_a_clear_error(tmp_path, tvt_pipe):
    with pytest.raises(MissingWeightsError, match="SD 2.1"):
        TVTPipeline.from_pretrained(tmp_path / "no_such_sd", vae_d4=tmp_path)
    with pytest.raises(MissingWeightsError, match="neither a TVT export"):
        TVTPipeline.from_pretrained(tmp_path)  # an empty folder
    export.save_tvt_export(tmp_path / "exp", ce_unet=tvt_pipe.unet, vae=tvt_pipe.vae, base_model=str(tmp_path / "gone"))
    with pytest.raises(MissingWeightsError, match="gone"):
        TVTPipeline.from_pretrained(tmp_path / "exp")


def test_export_with_several_adapters(tiny_sd, tmp_path):
    """The official code trains three LoRA adapters (encoder/decoder/others): each gets its file, all are merged."""
    from peft import LoraConfig

    pipe = TVTPipeline.from_sd(tiny_sd, architecture="osediff")
    torch.manual_seed(2)
    for name, targets in (("default_encoder", ["down_blocks.1.resnets.0.conv1"]), ("default_decoder", ["up_blocks.1.resnets.0.conv2"])):
        pipe.unet.add_adapter(LoraConfig(r=2, lora_alpha=2, init_lora_weights=False, target_modules=targets), adapter_name=name)
    pipe.unet.set_adapters(["default_encoder", "default_decoder"])
    z, emb = torch.randn(1, 4, 16, 16), pipe.encode_prompt("")
    with torch.no_grad():
        ref = pipe.generator.denoise(z, emb)
    export.save_tvt_export(tmp_path / "exp", ce_unet=pipe.unet, vae=pipe.vae, base_model=str(tiny_sd), architecture="osediff")
    assert all((tmp_path / "exp" / a / LORA_WEIGHT_NAME).is_file() for a in ("default_encoder", "default_decoder"))
    loaded = TVTPipeline.from_pretrained(tmp_path / "exp")
    with torch.no_grad():
        torch.testing.assert_close(loaded.generator.denoise(z, emb), ref, atol=1e-4, rtol=1e-5)


def test_official_release_layout_loads(tiny_sd, tmp_path):
    """A fake official release (model_TVT.pkl with three adapters + full layers, vae.ckpt) loads through
    tvt.models.convert, merges ALL three adapters, and uses the official t=1."""
    from peft import LoraConfig

    from tvt.models.generator import GENERATOR_TIMESTEP
    from tvt.models.lora import lora_target_modules
    from tvt.models.vae import build_vae_d4

    pipe = TVTPipeline.from_sd(tiny_sd, vae_d4=build_vae_d4("d4", sample_size=768), architecture="tvt")
    unet = pipe.unet
    names = lora_target_modules(unet, skip=is_fully_trained)
    groups = {"encoder": [n for n in names if n.startswith("down_blocks")], "decoder": [n for n in names if n.startswith("up_blocks")]}
    groups["others"] = [n for n in names if n not in groups["encoder"] + groups["decoder"]]
    for a, targets in groups.items():
        unet.add_adapter(LoraConfig(r=2, init_lora_weights=False, target_modules=targets), adapter_name=f"default_{a}")
    unet.set_adapters([f"default_{a}" for a in groups])
    torch.manual_seed(3)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if is_fully_trained(name.replace(".base_layer", "")):
                p.add_(0.05 * torch.randn_like(p))
    release = tmp_path / "ckp"
    release.mkdir()
    torch.save({"rank_unet": 2, **{f"unet_lora_{a}_modules": t for a, t in groups.items()},
                "state_dict_unet": {k: v for k, v in unet.state_dict().items()
                                    if "lora" in k or is_fully_trained(k.replace(".base_layer", ""))}},
               release / "model_TVT.pkl")
    torch.save({"state_dict": {f"vaeDe4.{k}": v for k, v in pipe.vae.state_dict().items()}}, release / "vae.ckpt")

    # the release is prompted with RAM + DAPE tags: without their weights, a clear error naming both files
    with pytest.raises(MissingWeightsError, match="ram_swin_large_14m.pth.*DAPE.pth"):
        TVTPipeline.from_pretrained(release, base_model=str(tiny_sd))
    loaded = TVTPipeline.from_pretrained(release, base_model=str(tiny_sd), prompt_extractor=None)
    assert loaded.generator.timestep == GENERATOR_TIMESTEP == 1
    assert loaded.prompt_spec.text("cat") == "cat, clean, high-resolution, 8k," and loaded.prompt_spec.dape_weights
    assert not has_unmerged_lora(loaded.unet)
    z, emb = torch.randn(1, 4, 32, 32), pipe.encode_prompt("")
    pipe.generator.timestep = 1
    with torch.no_grad():
        torch.testing.assert_close(loaded.generator.denoise(z, emb), pipe.generator.denoise(z, emb), atol=1e-4, rtol=1e-5)
    a, b = loaded.vae.state_dict(), pipe.vae.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
