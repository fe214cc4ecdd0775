import torch
from diffusers import UNet2DConditionModel
from peft import LoraConfig

from tvt.models.ce_unet import build_ce_unet_from_sd
from tvt.models.convert import convert_official_vae_d4, load_official_unet
from tvt.models.lora import UNET_LORA_PATTERNS
from tvt.models.vae import build_vae_d4
from tvt.testing import tiny_unet_config, tiny_vae_d4_kwargs


def test_official_vae_d4_roundtrip_is_bitwise(tmp_path):
    torch.manual_seed(0)
    vae = build_vae_d4("d4", **tiny_vae_d4_kwargs())
    ckpt = {"state_dict": {**{f"vaeDe4.{k}": v for k, v in vae.state_dict().items()},
                           "loss.discriminator.main.0.weight": torch.zeros(1)}, "epoch": 3}
    torch.save(ckpt, tmp_path / "vae.ckpt")
    out = convert_official_vae_d4(tmp_path / "vae.ckpt", **tiny_vae_d4_kwargs())
    a, b = vae.state_dict(), out.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _official_unet_layout(unet):
    """The official initialize_unet_TVT selection of LoRA targets, split in three adapters."""
    enc, dec, oth = [], [], []
    for n, _ in unet.named_parameters():
        if "bias" in n or "norm" in n:
            continue
        for pat in UNET_LORA_PATTERNS:
            if pat in n and ("down_blocks" in n or "conv_in" in n):
                enc.append(n.replace(".weight", ""))
                break
            if pat in n and "up_blocks" in n:
                dec.append(n.replace(".weight", ""))
                break
            if pat in n:
                oth.append(n.replace(".weight", ""))
                break
    return enc, dec, oth


def test_official_unet_conversion_matches_official_model(tmp_path):
    torch.manual_seed(0)
    sd = UNet2DConditionModel(**tiny_unet_config())
    official = build_ce_unet_from_sd(sd)
    enc, dec, oth = _official_unet_layout(official)
    for name, targets in zip(("encoder", "decoder", "others"), (enc, dec, oth)):
        official.add_adapter(LoraConfig(r=4, init_lora_weights="gaussian", target_modules=targets), adapter_name=f"default_{name}")
    official.set_adapters(["default_encoder", "default_decoder", "default_others"])
    trained = ("down_blocks.0", "up_blocks.3.upsamplers.0", "up_blocks.4", "conv_in", "conv_out")
    with torch.no_grad():
        for n, p in official.named_parameters():
            if "lora_B" in n or any(t in n for t in trained):
                p.add_(torch.randn_like(p) * 0.05)
    ckpt = {"unet_lora_encoder_modules": enc, "unet_lora_decoder_modules": dec, "unet_lora_others_modules": oth,
            "rank_unet": 4,
            "state_dict_unet": {k: v for k, v in official.state_dict().items() if "lora" in k or any(t in k for t in trained)}}
    torch.save(ckpt, tmp_path / "model.pkl")
    z, c, t = torch.randn(1, 4, 16, 16), torch.randn(1, 77, 32), torch.tensor([999])
    with torch.no_grad():
        ref = official(z, t, encoder_hidden_states=c).sample
        ours = load_official_unet(tmp_path / "model.pkl", build_ce_unet_from_sd(sd))
        out = ours(z, t, encoder_hidden_states=c).sample
    assert not any("lora_" in n for n, _ in ours.named_parameters())
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
