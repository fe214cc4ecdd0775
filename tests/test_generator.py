import torch
from diffusers import DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from tvt.models.generator import OneStepGenerator
from tvt.models.vae import load_vae_d8
from tvt.prompts import FixedPromptExtractor, encode_prompts, join_prompt


def _parts(sd):
    unet = UNet2DConditionModel.from_pretrained(sd, subfolder="unet")
    sched = DDPMScheduler.from_pretrained(sd, subfolder="scheduler")
    tok = CLIPTokenizer.from_pretrained(sd, subfolder="tokenizer")
    te = CLIPTextModel.from_pretrained(sd, subfolder="text_encoder")
    return unet, sched, tok, te


def test_denoise_equals_one_ddpm_scheduler_step(tiny_sd):
    unet, sched, tok, te = _parts(tiny_sd)
    gen = OneStepGenerator(load_vae_d8(tiny_sd), unet, sched.alphas_cumprod).eval()
    emb = encode_prompts(tok, te, ["a photo of a cat", ""])
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        z = gen.encode(x)
        z0 = gen.denoise(z, emb)
        eps = unet(z, torch.tensor([999, 999]), encoder_hidden_states=emb).sample
        sched.set_timesteps(timesteps=[999])
        ref = sched.step(eps, 999, z).prev_sample
        sr, latent = gen(x, emb)
    assert z.shape == (2, 4, 8, 8)
    torch.testing.assert_close(z0, ref, rtol=0, atol=1e-5)
    assert sr.shape == x.shape and sr.abs().max() <= 1 and latent.shape == z.shape


def test_prompts_batch_encoding(tiny_sd):
    _, _, tok, te = _parts(tiny_sd)
    prompts = FixedPromptExtractor("clean, high-resolution")(torch.zeros(3, 3, 8, 8))
    assert prompts == ["clean, high-resolution"] * 3
    emb = encode_prompts(tok, te, prompts)
    assert emb.shape == (3, 77, te.config.hidden_size)
    assert join_prompt("cat, grass", "high quality") == "cat, grass, high quality"
    assert join_prompt("", "x") == "x"
