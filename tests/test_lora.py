"""LoRA on the CE-UNet / VAE-D4 encoder: trainable set, merge equivalence, adapter and full-layer files."""
import copy

import pytest
import torch
from diffusers import UNet2DConditionModel
from peft.tuners.tuners_utils import BaseTunerLayer

from tvt.models.ce_unet import FULLY_TRAINED_PREFIXES, build_ce_unet_from_sd, is_fully_trained
from tvt.models.lora import (LORA_WEIGHT_NAME, add_ce_unet_lora, official_lora_groups, add_vae_encoder_lora, format_parameter_groups,
                             fully_trained_state_dict, load_fully_trained, load_lora_adapters, merge_lora,
                             save_fully_trained, save_lora_adapters, trainable_parameters_by_group)
from tvt.models.vae import build_vae_d4
from tvt.testing import TINY_TEXT_DIM, tiny_unet_config, tiny_vae_d4_kwargs


@pytest.fixture(scope="module")
def base_ce():
    torch.manual_seed(0)
    return build_ce_unet_from_sd(UNet2DConditionModel(**tiny_unet_config()))


def _trained_lora_ce(base_ce, seed=1):
    """A LoRA-wrapped copy with non-zero LoRA B and changed fully trained layers, as after training."""
    ce = copy.deepcopy(base_ce)
    add_ce_unet_lora(ce, rank=4)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in ce.named_parameters():
            if "lora_B" in n or (p.requires_grad and "lora_" not in n):
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return ce


def _run(unet):
    g = torch.Generator().manual_seed(0)
    z, c = torch.randn(1, 4, 16, 16, generator=g), torch.randn(1, 77, TINY_TEXT_DIM, generator=g)
    with torch.no_grad():
        return unet(z, torch.tensor([999]), encoder_hidden_states=c).sample


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_only_intended_parameters_require_grad(base_ce):
    ce = copy.deepcopy(base_ce)
    add_ce_unet_lora(ce, rank=4)
    for name, p in ce.named_parameters():
        assert p.requires_grad == ("lora_" in name or is_fully_trained(name)), name
    targets = {n for n, m in ce.named_modules() if isinstance(m, BaseTunerLayer)}  # (peft shortens config lists)
    official = {t for ts in official_lora_groups(base_ce).values() for t in ts}
    assert targets == official  # the official rule, fully trained layers included (as TVTModel does)
    assert {"conv_in", "down_blocks.0.resnets.0.conv1", "up_blocks.4.attentions.0.proj_in"} <= targets
    # the official rule, written out on parameter names as TVTModel.initialize_unet_TVT does
    grep = ["to_k", "to_q", "to_v", "to_out.0", "conv", "conv1", "conv2", "conv_in", "conv_shortcut", "conv_out",
            "proj_out", "proj_in", "ff.net.2", "ff.net.0.proj"]
    written_out = {n.replace(".weight", "") for n, _ in base_ce.named_parameters()
                   if not ("bias" in n or "norm" in n) and any(g in n for g in grep)}
    assert official == written_out
    assert set(official_lora_groups(base_ce)["others"]) == {t for t in official if t.startswith(("mid_block", "conv_out"))}
    no_full = copy.deepcopy(base_ce)
    add_ce_unet_lora(no_full, rank=4, lora_on_fully_trained=False)
    assert {n for n, m in no_full.named_modules() if isinstance(m, BaseTunerLayer)} == {
        t for t in official if not is_fully_trained(t)}
    assert not any("time_emb" in t or "time_embedding" in t for t in targets)
    assert {"mid_block.attentions.0.transformer_blocks.0.attn2.to_k", "up_blocks.1.resnets.0.conv_shortcut",
            "down_blocks.1.attentions.0.proj_in", "up_blocks.1.attentions.0.transformer_blocks.0.ff.net.2"} <= targets
    groups = trainable_parameters_by_group(ce)
    assert groups["full"] == sum(p.numel() for n, p in base_ce.named_parameters() if is_fully_trained(n))
    assert groups["lora"] > 0 and sum(groups.values()) == sum(p.numel() for p in ce.parameters())
    assert "ce_unet" in format_parameter_groups({"ce_unet": groups})
    assert set(FULLY_TRAINED_PREFIXES) == {"conv_in", "conv_out", "down_blocks.0", "up_blocks.3.upsamplers.0", "up_blocks.4"}


def test_merge_lora_matches_unmerged(base_ce):
    ce = _trained_lora_ce(base_ce)
    before = _run(ce)
    merge_lora(ce)
    assert not any("lora_" in n or "base_layer" in n for n, _ in ce.named_parameters())
    assert not getattr(ce, "peft_config", None)
    torch.testing.assert_close(_run(ce), before, rtol=0, atol=1e-5)


def test_adapter_and_full_layer_files_roundtrip_bitwise(base_ce, tmp_path):
    ce = _trained_lora_ce(base_ce)
    save_lora_adapters(ce, tmp_path / "lora")
    save_fully_trained(ce, tmp_path / "full.safetensors")
    assert (tmp_path / "lora" / LORA_WEIGHT_NAME).is_file()

    fresh = copy.deepcopy(base_ce)  # base weights + files -> the trained model
    load_fully_trained(fresh, tmp_path / "full.safetensors")
    load_lora_adapters(fresh, tmp_path / "lora")
    lora = lambda m: {k: v for k, v in m.state_dict().items() if "lora_" in k}  # noqa: E731
    assert _equal(lora(fresh), lora(ce))
    assert _equal(fully_trained_state_dict(fresh), fully_trained_state_dict(ce))
    assert fresh.peft_config["default"].r == 4 and fresh.peft_config["default"].lora_alpha == 8
    assert torch.equal(_run(fresh), _run(ce))

    # diffusers' own loader reads the same file
    other = copy.deepcopy(base_ce)
    other.load_lora_adapter(str(tmp_path / "lora"), prefix="unet", weight_name=LORA_WEIGHT_NAME, adapter_name="x")
    assert {k.replace(".x.", ".default."): v for k, v in lora(other).items()}.keys() == lora(ce).keys()

    # full layers into a LoRA-wrapped model work too; wrong files give clear errors
    wrapped = copy.deepcopy(base_ce)
    add_ce_unet_lora(wrapped)
    load_fully_trained(wrapped, tmp_path / "full.safetensors")
    assert _equal(fully_trained_state_dict(wrapped), fully_trained_state_dict(ce))
    with pytest.raises(FileNotFoundError):
        load_lora_adapters(copy.deepcopy(base_ce), tmp_path / "nothing")
    with pytest.raises(KeyError, match="no place"):
        load_fully_trained(UNet2DConditionModel(**tiny_unet_config()), tmp_path / "full.safetensors")


def test_several_adapters_save_to_subfolders(base_ce, tmp_path):
    from peft import LoraConfig

    ce = copy.deepcopy(base_ce)
    targets = official_lora_groups(ce)
    for name in ("encoder", "decoder"):
        ce.add_adapter(LoraConfig(r=2, init_lora_weights="gaussian", target_modules=targets[name]), adapter_name=f"default_{name}")
    with torch.no_grad():
        for n, p in ce.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    assert save_lora_adapters(ce, tmp_path) == ["default_encoder", "default_decoder"]
    fresh = copy.deepcopy(base_ce)
    assert load_lora_adapters(fresh, tmp_path) == ["default_decoder", "default_encoder"]
    assert _equal({k: v for k, v in fresh.state_dict().items() if "lora_" in k},
                  {k: v for k, v in ce.state_dict().items() if "lora_" in k})
    ce.set_adapters(["default_encoder", "default_decoder"])
    torch.testing.assert_close(_run(fresh), _run(ce), rtol=0, atol=0)  # both adapters active after loading


def test_vae_encoder_lora_touches_only_the_encoder():
    torch.manual_seed(0)
    vae = build_vae_d4("d4", **tiny_vae_d4_kwargs())
    config = add_vae_encoder_lora(vae, rank=4)
    assert "quant_conv" in config.target_modules and "post_quant_conv" not in config.target_modules
    assert all(t.startswith("encoder.") or t == "quant_conv" for t in config.target_modules)
    trainable = [n for n, p in vae.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert not any(n.startswith("decoder.") for n in trainable)


def test_lora_scaling_is_the_official_one(base_ce):
    """Official TVT/OSEDiff: LoraConfig(r=4) with peft's default alpha (8): every LoRA layer scales by 2."""
    from peft import LoraConfig

    official = LoraConfig(r=4).lora_alpha / 4
    ce = copy.deepcopy(base_ce)
    add_ce_unet_lora(ce, rank=4)
    vae = build_vae_d4(**tiny_vae_d4_kwargs())
    add_vae_encoder_lora(vae, rank=4)
    scalings = {m.scaling[a] for model in (ce, vae) for m in model.modules() if isinstance(m, BaseTunerLayer)
                for a in m.scaling}
    assert official == 2.0 and scalings == {official}
