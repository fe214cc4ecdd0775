import torch
from diffusers import UNet2DConditionModel

from tvt.flops import SD21_UNET_CONFIG, count_params, unet_complexity
from tvt.models.ce_unet import (FULLY_TRAINED_PREFIXES, build_ce_unet_from_sd, ce_unet_config, ce_unet_key_report,
                                is_fully_trained, load_ce_unet, load_sd_unet)
from tvt.models.lora import (add_ce_unet_lora, fully_trained_state_dict, load_fully_trained, merge_lora,
                             trainable_parameters_by_group)
from tvt.testing import tiny_unet_config


def _tiny_pair(seed=0):
    torch.manual_seed(seed)
    sd = UNet2DConditionModel(**tiny_unet_config())
    return sd, build_ce_unet_from_sd(sd)


def test_ce_unet_shape_runs_at_d4_resolution():
    _, ce = _tiny_pair()
    z = torch.randn(2, 4, 16, 24)  # twice SD's latent size of the same image
    out = ce(z, torch.tensor([999, 999]), encoder_hidden_states=torch.randn(2, 77, 32)).sample
    assert out.shape == z.shape
    assert len(ce.down_blocks) == 5 and len(ce.up_blocks) == 5
    assert ce.up_blocks[3].upsamplers is not None and ce.up_blocks[4].upsamplers is None


def test_key_mapping_every_sd_weight_lands_only_upsampler_new():
    sd, ce = _tiny_pair()
    report = ce_unet_key_report(sd, ce)
    assert report["unused_sd"] == []
    assert report["new"] == ["up_blocks.3.upsamplers.0.conv.bias", "up_blocks.3.upsamplers.0.conv.weight"]
    # the replicated last level sees fewer input channels: only its first resnet is cut
    assert all(k.startswith("up_blocks.4.resnets.0.") for k in report["sliced"])
    sd_w, ce_w = sd.state_dict(), ce.state_dict()
    for i in range(4):  # originals shifted by one level, bitwise
        for k, v in sd_w.items():
            if k.startswith(f"down_blocks.{i}."):
                assert torch.equal(ce_w[k.replace(f"down_blocks.{i}.", f"down_blocks.{i + 1}.", 1)], v)
            if k.startswith(f"up_blocks.{i}."):
                assert torch.equal(ce_w[k], v)
    for k, v in sd_w.items():  # the replicated first level is a copy of SD's first level
        if k.startswith("down_blocks.0."):
            assert torch.equal(ce_w[k], v)
    assert torch.equal(ce_w["mid_block.resnets.0.conv1.weight"], sd_w["mid_block.resnets.0.conv1.weight"])
    assert torch.equal(ce_w["up_blocks.4.resnets.1.conv1.weight"], sd_w["up_blocks.3.resnets.1.conv1.weight"])
    w_ce, w_sd = ce_w["up_blocks.4.resnets.0.conv1.weight"], sd_w["up_blocks.3.resnets.0.conv1.weight"]
    n_skip = sd.config.block_out_channels[0]
    assert torch.equal(w_ce[:, -n_skip:], w_sd[:, -n_skip:])  # skip channels kept


def test_full_size_mapping_and_params_on_meta():
    with torch.device("meta"):
        sd = UNet2DConditionModel(**SD21_UNET_CONFIG)
        ce = UNet2DConditionModel(**ce_unet_config(sd.config))
    assert abs(count_params(sd) / 865.9e6 - 1) < 0.01
    assert abs(count_params(ce) / 896e6 - 1) < 0.01  # REFERENCE.md
    report = ce_unet_key_report(sd, ce)
    assert report["unused_sd"] == [] and len(report["new"]) == 2
    assert {k.rsplit(".", 1)[0] for k in report["sliced"]} == {
        "up_blocks.4.resnets.0.norm1", "up_blocks.4.resnets.0.conv1", "up_blocks.4.resnets.0.conv_shortcut"}


def test_full_size_flops_match_paper():
    with torch.device("meta"):
        sd = UNet2DConditionModel(**SD21_UNET_CONFIG)
        ce = UNet2DConditionModel(**ce_unet_config(sd.config))
    assert abs(unet_complexity(sd, 128).flops / 1.35e12 - 1) < 0.05  # Sec. 3.3
    assert abs(unet_complexity(ce, 128).flops / 0.73e12 - 1) < 0.05


def test_only_intended_parameters_require_grad():
    _, ce = _tiny_pair()
    add_ce_unet_lora(ce, rank=4)
    for name, p in ce.named_parameters():
        base = name.replace(".base_layer", "")
        expected = "lora_" in name or is_fully_trained(base)
        assert p.requires_grad == expected, name
        if "lora_" in name:
            assert not is_fully_trained(base.split(".lora_")[0])  # no LoRA on fully trained layers
    groups = trainable_parameters_by_group(ce)
    assert groups["lora"] > 0 and groups["full"] > 0 and groups["frozen"] > 0
    assert set(FULLY_TRAINED_PREFIXES) >= {"down_blocks.0", "up_blocks.4"}


def test_merge_lora_matches_unmerged():
    _, ce = _tiny_pair()
    add_ce_unet_lora(ce, rank=4)
    with torch.no_grad():
        for n, p in ce.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    z, c, t = torch.randn(1, 4, 16, 16), torch.randn(1, 77, 32), torch.tensor([999])
    with torch.no_grad():
        before = ce(z, t, encoder_hidden_states=c).sample
        merge_lora(ce)
        after = ce(z, t, encoder_hidden_states=c).sample
    assert not any("lora_" in n for n, _ in ce.named_parameters())
    torch.testing.assert_close(after, before, rtol=0, atol=1e-5)


def test_save_load_roundtrips_are_bitwise(tmp_path):
    sd, ce = _tiny_pair()
    ce.save_pretrained(tmp_path / "ce")
    sd.save_pretrained(tmp_path / "sd" / "unet")
    loaded = load_ce_unet(tmp_path / "ce")
    assert all(torch.equal(a, b) for a, b in zip(ce.state_dict().values(), loaded.state_dict().values()))
    assert torch.equal(load_sd_unet(tmp_path / "sd").conv_in.weight, sd.conv_in.weight)
    # fully trained layers alone, into a fresh LoRA-wrapped CE-UNet
    add_ce_unet_lora(ce)
    with torch.no_grad():
        ce.up_blocks[4].resnets[0].conv1.weight.add_(1.0)
    from tvt.models.lora import save_fully_trained

    save_fully_trained(ce, tmp_path / "full.safetensors")
    _, fresh = _tiny_pair(seed=1)
    add_ce_unet_lora(fresh)
    load_fully_trained(fresh, tmp_path / "full.safetensors")
    a, b = fully_trained_state_dict(ce), fully_trained_state_dict(fresh)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
