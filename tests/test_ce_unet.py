"""CE-UNet (Sec. 3.3): config, SD weight mapping, shapes, full-size params/FLOPs on the meta device, save/load."""
import pytest
import torch
from diffusers import UNet2DConditionModel

from tvt.errors import MissingWeightsError
from tvt.flops import count_params, unet_complexity
from tvt.models.ce_unet import build_ce_unet_from_sd, ce_unet_config, load_ce_unet, load_sd_unet, sd_to_ce_unet_key_map
from tvt.models.sd21 import SD21_UNET_CONFIG, downscale_factor
from tvt.testing import TINY_TEXT_DIM, tiny_unet_config


def ce_unet_key_report(sd_unet: torch.nn.Module, ce_unet: torch.nn.Module) -> dict[str, list[str]]:
    """Where SD's weights went: CE-UNet names ``copied`` (same shape) / ``sliced`` (see tvt.models.ce_unet._fit), ``new``
    (random init; must be only up_blocks.3.upsamplers.0) and ``unused_sd`` (SD names with no place: must be [])."""
    sd_sd, ce_sd = sd_unet.state_dict(), ce_unet.state_dict()
    copied, sliced, unused = [], [], []
    for sd_key, targets in sd_to_ce_unet_key_map(sd_sd).items():
        targets = [k for k in targets if k in ce_sd]
        if not targets:
            unused.append(sd_key)
        for k in targets:
            (copied if ce_sd[k].shape == sd_sd[sd_key].shape else sliced).append(k)
    new = sorted(set(ce_sd) - set(copied) - set(sliced))
    return {"copied": copied, "sliced": sliced, "new": new, "unused_sd": unused}


UPSAMPLER = ["up_blocks.3.upsamplers.0.conv.bias", "up_blocks.3.upsamplers.0.conv.weight"]


@pytest.fixture(scope="module")
def tiny_pair():
    torch.manual_seed(0)
    sd = UNet2DConditionModel(**tiny_unet_config())
    return sd, build_ce_unet_from_sd(sd)


@pytest.fixture(scope="module")
def full_size_meta():
    with torch.device("meta"):
        sd = UNet2DConditionModel(**SD21_UNET_CONFIG)
    return sd, build_ce_unet_from_sd(sd)  # the build itself stays on meta


def test_full_size_config_is_the_reference_layout():
    cfg = ce_unet_config(SD21_UNET_CONFIG)
    assert cfg["block_out_channels"] == (320, 320, 640, 1280, 1280)
    assert cfg["down_block_types"] == ("CrossAttnDownBlock2D",) * 4 + ("DownBlock2D",)  # new level keeps attention
    assert cfg["up_block_types"] == ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 4
    assert cfg["attention_head_dim"] == (5, 5, 10, 20, 20)
    assert cfg["cross_attention_dim"] == 1024 and cfg["use_linear_projection"] and cfg["sample_size"] == 128
    assert (downscale_factor(SD21_UNET_CONFIG), downscale_factor(cfg)) == (8, 16)  # latent sides: multiples of these
    with pytest.raises(ValueError, match="4-level"):
        ce_unet_config(cfg)


def test_ce_unet_runs_at_d4_resolution(tiny_pair):
    _, ce = tiny_pair
    z = torch.randn(2, 4, 16, 24)  # twice SD's latent size of the same image
    with torch.no_grad():
        out = ce(z, torch.tensor([999, 999]), encoder_hidden_states=torch.randn(2, 77, TINY_TEXT_DIM)).sample
    assert out.shape == z.shape
    assert len(ce.down_blocks) == 5 and len(ce.up_blocks) == 5
    assert ce.up_blocks[3].upsamplers is not None and ce.up_blocks[4].upsamplers is None


def test_tiny_mapping_every_sd_weight_lands_and_copies_are_bitwise(tiny_pair):
    sd, ce = tiny_pair
    report = ce_unet_key_report(sd, ce)
    assert report["unused_sd"] == [] and report["new"] == UPSAMPLER
    assert {k.rsplit(".", 1)[0] for k in report["sliced"]} == {
        "up_blocks.4.resnets.0.norm1", "up_blocks.4.resnets.0.conv1", "up_blocks.4.resnets.0.conv_shortcut"}
    sd_w, ce_w = sd.state_dict(), ce.state_dict()
    for sd_key, targets in sd_to_ce_unet_key_map(sd).items():
        for k in targets:
            if k not in report["sliced"]:
                assert torch.equal(ce_w[k], sd_w[sd_key]), (sd_key, k)
    # the shift and the two copies, spelled out
    assert torch.equal(ce_w["down_blocks.2.attentions.0.proj_in.weight"], sd_w["down_blocks.1.attentions.0.proj_in.weight"])
    assert torch.equal(ce_w["down_blocks.0.attentions.0.proj_in.weight"], sd_w["down_blocks.0.attentions.0.proj_in.weight"])
    assert torch.equal(ce_w["up_blocks.4.attentions.1.proj_out.weight"], sd_w["up_blocks.3.attentions.1.proj_out.weight"])
    assert torch.equal(ce_w["mid_block.resnets.0.conv1.weight"], sd_w["mid_block.resnets.0.conv1.weight"])
    assert torch.equal(ce_w["time_embedding.linear_1.weight"], sd_w["time_embedding.linear_1.weight"])
    # up_blocks.4.resnets.0 sees [hidden (n), skip (n)] where SD saw [hidden (2n), skip (n)]: first n hidden + skip kept
    n = sd.config.block_out_channels[0]
    w_ce, w_sd = ce_w["up_blocks.4.resnets.0.conv1.weight"], sd_w["up_blocks.3.resnets.0.conv1.weight"]
    assert w_ce.shape[1] == 2 * n and w_sd.shape[1] == sd.config.block_out_channels[1] + n
    assert torch.equal(w_ce[:, :n], w_sd[:, :n]) and torch.equal(w_ce[:, n:], w_sd[:, -n:])


def test_full_size_params_and_mapping_on_meta(full_size_meta):
    sd, ce = full_size_meta
    assert next(ce.parameters()).is_meta
    assert abs(count_params(sd) / 865.9e6 - 1) < 0.001
    assert abs(count_params(ce) / 896e6 - 1) < 0.001  # 896M: SD's 865.9M + the replicated levels
    report = ce_unet_key_report(sd, ce)
    assert report["unused_sd"] == [] and report["new"] == UPSAMPLER
    assert sorted(report["sliced"]) == [f"up_blocks.4.resnets.0.{n}" for n in  # tensors over input channels
                                        ("conv1.weight", "conv_shortcut.weight", "norm1.bias", "norm1.weight")]


def test_full_size_flops_match_paper(full_size_meta):
    sd, ce = full_size_meta
    assert abs(unet_complexity(sd, 128).flops / 1.35e12 - 1) < 0.05  # Sec. 3.3
    assert abs(unet_complexity(ce, 128).flops / 0.73e12 - 1) < 0.05
    assert abs(unet_complexity(sd, 64).flops / 0.339e12 - 1) < 0.01  # SD 2.1's UNet at its own 64x64 latent


def test_save_load_roundtrip_bitwise_and_clear_errors(tiny_pair, tmp_path):
    sd, ce = tiny_pair
    ce.save_pretrained(tmp_path / "ce")
    sd.save_pretrained(tmp_path / "sd" / "unet")
    loaded = load_ce_unet(tmp_path / "ce")
    a, b = ce.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert list(loaded.config.block_out_channels) == list(ce.config.block_out_channels)
    assert torch.equal(load_sd_unet(tmp_path / "sd").conv_in.weight, sd.conv_in.weight)
    with pytest.raises(MissingWeightsError, match="SD 2.1 UNet"):
        load_sd_unet(tmp_path / "absent")
    with pytest.raises(ValueError, match="not a CE-UNet"):
        load_ce_unet(tmp_path / "sd", subfolder="unet")


def test_build_refuses_a_lora_wrapped_sd_unet():
    from peft import LoraConfig

    sd = UNet2DConditionModel(**tiny_unet_config())
    sd.add_adapter(LoraConfig(r=2, target_modules=["to_q"]))
    with pytest.raises(ValueError, match="plain SD UNet"):
        build_ce_unet_from_sd(sd)
