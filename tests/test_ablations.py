"""Every architecture of Tables 5 and 7 (tvt.models.architectures) on tiny models: the ablations' own pieces do what
their docs say (S2's zero-init skips, S3's channel-interpolated latent, S5's group pruning), and each architecture
trains a step, exports, reloads bit-identically and super-resolves an image through the same code as TVT."""
import shutil

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from tvt.config import load_config
from tvt.errors import InputError
from tvt.models.architectures import ARCHITECTURES, get_architecture
from tvt.models.latent_channels import build_c8_unet_from_sd, channel_interpolation, narrow_latent, widen_latent
from tvt.models.pruned_unet import build_pruned_unet_from_sd
from tvt.models.vae import build_vae_d4, vae_variant_of
from tvt.models.vae_skip import AutoencoderKLSkip
from tvt.testing import make_tiny_vae_d4, tiny_unet_config, tiny_vae_d4_kwargs, tiny_vae_d8_config

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sd_unet():
    torch.manual_seed(0)
    return UNet2DConditionModel(**tiny_unet_config()).eval()


def _unet_args(channels=4):
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, channels, 16, 16, generator=g), torch.tensor([1, 1]), torch.randn(2, 77, 32, generator=g)


def test_the_registry_holds_every_row_of_tables_5_and_7():
    rows = {a.row.split(" ")[0]: a.paper_flops / 1e12 for a in ARCHITECTURES.values()}
    assert rows == {"TVT": 1.97, "S1": 2.27, "S2": 2.27, "S3": 2.27, "S4": 2.59, "S5": 2.00, "V1": 3.02, "V2": 2.40}
    with pytest.raises(InputError, match="architecture must be one of"):
        get_architecture("s6")


def test_s2_skips_start_at_zero_so_vae_d8_sc_is_sd_vae_d8_until_trained():
    torch.manual_seed(0)
    vae = AutoencoderKL(**tiny_vae_d8_config()).eval()
    sc = AutoencoderKLSkip.from_vae_d8(vae).eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        ref = vae.decode(vae.encode(x).latent_dist.mode()).sample
        assert torch.equal(sc.decode(sc.encode(x).latent_dist.mode()).sample, ref)
        assert sc.skip_levels == (1, 2)  # StableSR's CFW levels: all but the first and the last
        for conv in sc.skip_convs.values():
            conv.weight.normal_()
        z = sc.encode(x).latent_dist.mode()
        assert not torch.allclose(sc.decode(z).sample, ref, atol=1e-3)  # the decoder now reads the encoder
        assert torch.equal(sc.decode(z[:1]).sample, vae.decode(z[:1]).sample)  # other images: no features, SD's decode


def test_s3_latent_is_the_d8_latent_interpolated_over_channels_and_the_unet_starts_equivariant(sd_unet):
    a = channel_interpolation(8)
    assert a.shape == (8, 4) and torch.allclose(a.sum(1), torch.ones(8, dtype=a.dtype))  # rows interpolate
    ends = torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 1.0]], dtype=a.dtype)
    assert torch.equal(a[[0, -1]], ends)  # the first and last channels are VAE-D8's first and last
    z, t, c = _unet_args()
    assert torch.allclose(narrow_latent(widen_latent(z, 8)), z, atol=1e-6)
    u8 = build_c8_unet_from_sd(sd_unet).eval()
    with torch.no_grad():
        eps4 = sd_unet(z, t, encoder_hidden_states=c).sample
        eps8 = u8(widen_latent(z, 8), t, encoder_hidden_states=c).sample
    assert torch.allclose(eps8, widen_latent(eps4, 8), atol=1e-5)  # UNet8(A z) = A UNet4(z)


def test_s5_prunes_a_quarter_of_every_width_keeping_whole_groups_of_sd(sd_unet):
    pruned = build_pruned_unet_from_sd(sd_unet)
    sd_cfg, cfg = sd_unet.config, pruned.config
    assert list(cfg.block_out_channels) == [c * 3 // 4 for c in sd_cfg.block_out_channels]
    assert cfg.norm_num_groups * 4 == sd_cfg.norm_num_groups * 3  # SD's group size kept
    unit = sd_cfg.block_out_channels[0] // sd_cfg.norm_num_groups  # channels of one group at level 0
    kept = [i for i in range(sd_cfg.block_out_channels[0]) if (i // unit) % 4 != 3]
    assert torch.equal(pruned.conv_in.weight, sd_unet.conv_in.weight[kept])  # whole groups of SD's, in order
    assert torch.equal(pruned.down_blocks[0].resnets[0].norm1.weight, sd_unet.down_blocks[0].resnets[0].norm1.weight[kept])
    n_sd, n_pr = (sum(p.numel() for p in m.parameters()) for m in (sd_unet, pruned))
    assert 0.5 < n_pr / n_sd < 0.62  # ~ (3/4)^2 of the weights
    z, t, c = _unet_args()
    assert pruned(z, t, encoder_hidden_states=c).sample.shape == z.shape


def test_a_vae_is_checked_against_the_architecture_it_is_given_to():
    assert [vae_variant_of(build_vae_d4(v, **tiny_vae_d4_kwargs(v)).config) for v in ("d4", "v1", "v2", "d8c8")] == \
        ["d4", "v1", "v2", "d8c8"]
    with pytest.raises(InputError, match="needs a v1 VAE, got a d4 layout"):
        get_architecture("v1").check_vae(build_vae_d4("d4", **tiny_vae_d4_kwargs()))


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "configs" / "ablations").glob("*.yaml")))
def test_every_ablation_config_loads_on_top_of_its_paper_scale_base(name):
    from tvt.train.isr import ISRConfig
    from tvt.train.vae_transfer import VAETransferConfig

    schema = ISRConfig if name.startswith("isr_") else VAETransferConfig
    cfg = load_config(schema, ROOT / "configs" / "ablations" / name)
    base = load_config(schema, ROOT / "configs" / ("isr.yaml" if name.startswith("isr_") else
                                                   f"vae_stage{name[-6]}.yaml" if "stage" in name else "vae_stage1.yaml"))
    if name.startswith("isr_"):
        assert cfg.architecture in ARCHITECTURES and cfg.train.lr == base.train.lr and cfg.loss == base.loss
    elif "stage" in name:  # Sec. 4.3: ablation VAEs train on OpenImage only; the rest is the TVT stage's recipe
        assert len(cfg.data.sources) == 1 and "lists/openimage.txt" in str(cfg.data.sources[0])
        assert cfg.mode == base.mode and cfg.loss == base.loss and cfg.variant in ("d4", "v1", "v2", "d8c8")


# ---------------------------------------------------------------------------------------------
# Each architecture through training, export, reload and the pipeline
# ---------------------------------------------------------------------------------------------
TRAINED_VAE = {"tvt": "d4", "s3": "d8c8", "s4": "d4", "s5": "d4", "v1": "v1", "v2": "v2"}


def _one_step(tmp_path, tiny_sd, drealsr, name):
    """One ISR optimizer step of ``name`` on tiny models (VSD on; LPIPS off: its VGG is the slow part)."""
    from conftest import small_hr_folder

    from tvt.train.isr import ISRConfig, ISRStage
    from tvt.train.trainer import Trainer

    (tmp_path / "hr").mkdir()
    hr = small_hr_folder(drealsr, tmp_path / "hr", 2, 64)
    vae = make_tiny_vae_d4(tmp_path / "vae", variant=TRAINED_VAE.get(name, "d4"))
    cfg = load_config(ISRConfig, [
        f"sd_model={tiny_sd}", f"vae_d4={vae}", f"architecture={name}", f"data.sources=[{hr}]", "data.crop_size=64",
        "data.degradation=tiny", "loss.lpips_weight=0", "loss.cfg_scale=2.0", "train.batch_size=1", "train.lr=1e-3",
        "train.tracker=none", f"train.output_dir={tmp_path / 'runs'}", "train.run_name=isr", "train.max_steps=1",
        "train.ckpt_every=1000", "train.num_workers=0", "prompt.extractor=fixed", "inference_prompt.extractor=fixed"])
    stage = ISRStage(cfg)
    return stage, Trainer(stage).fit() / "export"


@pytest.mark.parametrize("name", ["s3"])  # the most new code (8-channel latent, widened UNet, VSD in SD's space); the rest: slow
def test_each_ablation_trains_exports_reloads_bit_identically_and_super_resolves(tmp_path, tiny_sd, drealsr, name):
    _check_architecture(tmp_path, tiny_sd, drealsr, name)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["s2", "s5", "osediff", "tvt", "s4", "v1", "v2"])
def test_the_other_rows_through_the_same_path(tmp_path, tiny_sd, drealsr, name):
    _check_architecture(tmp_path, tiny_sd, drealsr, name)


def _check_architecture(tmp_path, tiny_sd, drealsr, name):
    from tvt.inference import TVTPipeline

    stage, export = _one_step(tmp_path, tiny_sd, drealsr, name)
    arch = ARCHITECTURES[name]
    gen = stage.accelerator.unwrap_model(stage.generator).eval()
    pipe = TVTPipeline.from_pretrained(export, process_size=0, prompt_extractor=None)
    assert pipe.architecture == name and type(pipe.vae) is arch.vae_class
    # what trained arrives: the same one-step map (LoRA merged at load: float rounding only)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    emb = pipe.encode_prompt([""])
    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        ref = gen.decode(gen.denoise(gen.encode(x, generator=g), emb))
        g = torch.Generator().manual_seed(0)
        got = pipe.generator.decode(pipe.generator.denoise(pipe.generator.encode(x, generator=g), emb))
    assert torch.allclose(got, ref, atol=2e-4), (got - ref).abs().max()
    if arch.vae_trainable:  # S2's skips learnt something and were exported
        assert any(p.abs().sum() > 0 for p in pipe.vae.skip_convs.parameters())
    lr = torch.rand(1, 3, 16, 16)
    out = pipe(lr, prompt="", output_type="pt").images
    assert out.shape == (1, 3, 64, 64) and torch.isfinite(out).all()
    pipe.save_pretrained(tmp_path / "again")
    again = TVTPipeline.from_pretrained(tmp_path / "again", process_size=0, prompt_extractor=None)
    assert torch.equal(again(lr, prompt="", output_type="pt").images, out)
    shutil.rmtree(tmp_path / "runs")


def test_a_config_names_the_yaml_it_overrides_with_base(tmp_path):
    from tvt.errors import ConfigError
    from tvt.train.isr import ISRConfig

    (tmp_path / "a.yaml").write_text("architecture: s4\nlora_rank: 8\ntrain:\n  lr: 1.0e-3\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yaml").write_text("_base_: ../a.yaml\nlora_rank: 2\n")
    cfg = load_config(ISRConfig, ["--config", str(tmp_path / "sub" / "b.yaml"), "train.lr=2e-3"])
    assert (cfg.architecture, cfg.lora_rank, cfg.train.lr) == ("s4", 2, 2e-3)  # base < file < overrides
    (tmp_path / "a.yaml").write_text("_base_: sub/b.yaml\n")
    with pytest.raises(ConfigError, match="_base_ cycle"):
        load_config(ISRConfig, tmp_path / "sub" / "b.yaml")
    (tmp_path / "c.yaml").write_text("_base_: missing.yaml\n")
    with pytest.raises(ConfigError, match="config file not found: .*missing.yaml"):
        load_config(ISRConfig, tmp_path / "c.yaml")


@pytest.mark.parametrize("name", ["s4", "s3"])
def test_from_sd_builds_the_untrained_pipeline_of_any_row(tmp_path, tiny_sd, name):
    """(from_sd used to know only tvt and osediff)"""
    from tvt.inference import TVTPipeline

    vae = make_tiny_vae_d4(tmp_path / "vae", variant=TRAINED_VAE[name])
    pipe = TVTPipeline.from_sd(tiny_sd, vae_d4=vae, architecture=name, process_size=0)
    assert pipe.architecture == name and pipe.unet.config.in_channels == pipe.vae.config.latent_channels
    assert pipe(torch.rand(1, 3, 16, 16), prompt="", output_type="pt").images.shape == (1, 3, 64, 64)
