"""The one-step generator (Sec. 3.3, Eqs. 5-6), its latent tiling, and prompt text/encoding."""
import pytest
import torch
from diffusers import DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from tvt.models.generator import OneStepGenerator, Tiling, gaussian_weights, tile_groups
from tvt.models.vae import load_vae_d8
from tvt.prompts import FixedPromptExtractor, PromptSpec, encode_prompts, official_inference_prompt


def _parts(sd):
    unet = UNet2DConditionModel.from_pretrained(sd, subfolder="unet")
    sched = DDPMScheduler.from_pretrained(sd, subfolder="scheduler")
    tok = CLIPTokenizer.from_pretrained(sd, subfolder="tokenizer")
    te = CLIPTextModel.from_pretrained(sd, subfolder="text_encoder")
    return unet, sched, tok, te


def test_default_timestep_is_the_papers_and_denoise_is_one_scheduler_step(tiny_sd):
    """Sec. 3.3: "the time step is set to 1 in our work"; official: DDPMScheduler.set_timesteps(1) + step()."""
    unet, sched, tok, te = _parts(tiny_sd)
    gen = OneStepGenerator(load_vae_d8(tiny_sd), unet, sched.alphas_cumprod).eval()
    assert gen.timestep == 1 and gen.sample_posterior  # the official code samples the VAE posterior
    emb = encode_prompts(tok, te, ["a photo of a cat", ""])
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        z = gen.encode(x)
        z0 = gen.denoise(z, emb)
        eps = unet(z, torch.tensor([1, 1]), encoder_hidden_states=emb).sample
        sched.set_timesteps(1)
        assert sched.timesteps.tolist() == [1]  # SD 2.1's steps_offset=1: one step IS t = 1
        ref = sched.step(eps, 1, z).prev_sample
        sr, latent = gen(x, emb)
    assert z.shape == (2, 4, 8, 8)
    torch.testing.assert_close(z0, ref, rtol=0, atol=1e-5)
    assert sr.shape == x.shape and sr.abs().max() <= 1 and latent.shape == z.shape
    # at t = 1 the map starts near the identity on the latent: x0 = 1.0009 z - 0.041 eps
    a = sched.alphas_cumprod[1]
    torch.testing.assert_close(z0, z / a.sqrt() - ((1 - a) / a).sqrt() * eps, rtol=0, atol=1e-5)
    assert abs(float(1 / a.sqrt()) - 1.0009) < 1e-4 and abs(float(((1 - a) / a).sqrt()) - 0.0413) < 1e-3


def test_posterior_mode_is_deterministic_and_sample_follows_the_generator(tiny_sd):
    unet, sched, _, _ = _parts(tiny_sd)
    gen = OneStepGenerator(load_vae_d8(tiny_sd), unet, sched.alphas_cumprod).eval()
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        a = gen.encode(x, torch.Generator().manual_seed(3))
        b = gen.encode(x, torch.Generator().manual_seed(3))
        c = gen.encode(x, torch.Generator().manual_seed(4))
        gen.sample_posterior = False
        m = gen.encode(x)
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, m)


def test_prompt_text_and_batch_encoding(tiny_sd):
    _, _, tok, te = _parts(tiny_sd)
    prompts = FixedPromptExtractor("clean, high-resolution")(torch.zeros(3, 3, 8, 8))
    assert prompts == ["clean, high-resolution"] * 3
    emb = encode_prompts(tok, te, prompts)
    assert emb.shape == (3, 77, te.config.hidden_size)
    # the official f-strings: training f"{caption}, {positive_prompt}" (positive ""), inference f"{caption}, {prompt},"
    assert PromptSpec().text("cat, grass") == "cat, grass, "
    assert official_inference_prompt().text("cat") == "cat, clean, high-resolution, 8k,"


def test_latent_tiling_is_a_call_argument_and_blends_the_tiles(tiny_sd):
    """A Tiling passed to denoise runs it on overlapping tiles (one UNet call each) and blends them: the result is
    the Gaussian-weighted mean of each tile's own denoise, computed here by hand; a call without it is whole."""
    unet, sched, _, te = _parts(tiny_sd)
    gen = OneStepGenerator(load_vae_d8(tiny_sd), unet, sched.alphas_cumprod).eval()
    calls = []
    unet.register_forward_pre_hook(lambda *_: calls.append(1))
    z, emb = torch.randn(1, 4, 24, 24), torch.randn(1, 77, te.config.hidden_size)
    with torch.no_grad():
        whole = gen.denoise(z, emb)
        tiled = gen.denoise(z, emb, Tiling(16, 8))  # tile starts 0, 8 per side
        again = gen.denoise(z, emb)
        weight = gaussian_weights(16, 16)
        num, den = torch.zeros_like(z), torch.zeros(1, 1, 24, 24)
        for y in (0, 8):
            for x in (0, 8):
                num[..., y : y + 16, x : x + 16] += gen.denoise(z[..., y : y + 16, x : x + 16], emb) * weight
                den[..., y : y + 16, x : x + 16] += weight
    assert len(calls) == 1 + 4 + 1 + 4 and torch.equal(again, whole)
    torch.testing.assert_close(tiled, num / den, atol=1e-5, rtol=0)
    assert (tiled - whole).abs().max() > 1e-3  # the tiles see less context: not the whole result
    with pytest.raises(ValueError, match="overlap"):
        Tiling(8, 8)


def test_tiles_run_in_batches(tiny_sd):
    """Tiling(tile, overlap, batch): up to ``batch`` tiles per UNet call, in even groups, each image's prompt
    with its tiles; the result is the one-by-one blend."""
    assert tile_groups(9, 4) == [3, 3, 3] and tile_groups(25, 16) == [13, 12] and tile_groups(3, 1) == [1, 1, 1]
    unet, sched, tok, te = _parts(tiny_sd)
    gen = OneStepGenerator(load_vae_d8(tiny_sd), unet, sched.alphas_cumprod).eval()
    batches = []
    unet.register_forward_pre_hook(lambda m, args, kwargs: batches.append((args[0].shape[0], kwargs["encoder_hidden_states"])),
                                   with_kwargs=True)
    z, emb = torch.randn(2, 4, 24, 24), encode_prompts(tok, te, ["a cat", "a dog"])  # two images, two prompts
    with torch.no_grad():
        one_by_one = gen.denoise(z, emb, Tiling(16, 8))  # 2 x 2 tiles
        batched = gen.denoise(z, emb, Tiling(16, 8, batch=3))  # 4 tiles in groups of 2
    assert [b for b, _ in batches] == [2] * 4 + [4, 4]
    assert torch.equal(batches[-1][1], torch.cat([emb, emb]))  # tile-major: the prompts repeat per tile
    torch.testing.assert_close(batched, one_by_one, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="batch"):
        Tiling(16, 8, batch=0)
