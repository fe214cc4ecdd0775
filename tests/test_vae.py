import pytest
import torch

from tvt.errors import MissingWeightsError
from tvt.models.sd21 import SD21_VAE_CONFIG, downscale_factor
from tvt.models.vae import AutoencoderKLD4, build_vae_d4, enable_vae_tiling, load_vae_d4, load_vae_d8
from tvt.testing import tiny_vae_d4_kwargs


def _params(m):
    return sum(p.numel() for p in m.parameters())


def test_full_size_d4_param_count_matches_paper():
    with torch.device("meta"):
        d4 = build_vae_d4("d4")
    assert abs(_params(d4) / 15.2e6 - 1) < 0.02  # Table 1: 15.2M
    assert isinstance(d4.encoder.mid_block, torch.nn.Module) and not list(d4.encoder.mid_block.parameters())


def test_full_size_d8_param_count_matches_paper():
    from diffusers import AutoencoderKL

    with torch.device("meta"):
        d8 = AutoencoderKL(**SD21_VAE_CONFIG)
    assert abs(_params(d8) / 83.7e6 - 1) < 0.02  # Table 1: 83.7M
    assert downscale_factor(d8.config) == 8 and build_vae_d4("d4", **tiny_vae_d4_kwargs()).downscale_factor == 4


def test_variants_have_mid_block_only_when_asked():
    with torch.device("meta"):
        v1, v2 = build_vae_d4("v1"), build_vae_d4("v2")
    assert list(v1.encoder.mid_block.parameters()) and not list(v2.encoder.mid_block.parameters())
    assert v1.config.block_out_channels == v2.config.block_out_channels == (128, 256, 512)
    with pytest.raises(ValueError, match="unknown VAE variant"):
        build_vae_d4("v9")


def test_d4_encode_decode_shapes():
    vae = build_vae_d4("d4", **tiny_vae_d4_kwargs()).eval()
    x = torch.rand(2, 3, 64, 96) * 2 - 1
    with torch.no_grad():
        z = vae.encode(x).latent_dist.mode()
        y = vae.decode(z).sample
    assert z.shape == (2, 4, 16, 24)  # 4x downsampling
    assert y.shape == x.shape


def test_full_size_d4_maps_512_to_128_latent_on_meta():
    with torch.device("meta"):
        vae = build_vae_d4("d4")
        z = vae.encode(torch.zeros(1, 3, 512, 512, device="meta")).latent_dist.mode()
    assert z.shape == (1, 4, 128, 128)


def test_d4_save_load_roundtrip_is_bitwise(tmp_path):
    vae = build_vae_d4("d4", **tiny_vae_d4_kwargs())
    vae.save_pretrained(tmp_path / "d4")
    loaded = load_vae_d4(tmp_path / "d4")
    assert isinstance(loaded, AutoencoderKLD4) and loaded.config.use_mid_block is False
    a, b = vae.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_d8_loads_from_tiny_sd_folder(tiny_sd):
    vae = load_vae_d8(tiny_sd)
    assert vae.config.latent_channels == 4 and len(vae.config.block_out_channels) == 4


def test_missing_weights_give_clear_error(tmp_path):
    with pytest.raises(MissingWeightsError, match="VAE-D8"):
        load_vae_d8(tmp_path / "nowhere")
    with pytest.raises(MissingWeightsError, match="VAE-D4"):
        load_vae_d4(tmp_path / "nowhere")


def test_vae_tiling_is_diffusers_own_with_our_tile_size():
    """enable_vae_tiling sets diffusers' tile sizes (image and latent, kept consistent) and its switch; a tiled
    encode of an image larger than a tile runs and differs from the untiled one only by the seams' blending."""
    torch.manual_seed(0)
    vae = build_vae_d4("d4", **tiny_vae_d4_kwargs()).eval()
    x = torch.rand(1, 3, 48, 56) * 2 - 1
    with torch.no_grad():
        whole = vae.encode(x).latent_dist.mode()
        enable_vae_tiling(vae, 44)  # rounded down to 4 latent pixels: diffusers' 1/4-tile blend stays whole
        assert vae.use_tiling and (vae.tile_sample_min_size, vae.tile_latent_min_size) == (32, 8)
        tiled = vae.encode(x).latent_dist.mode()
        for size in (20, 28, 36):  # sizes that are not multiples of 4 latent pixels still give whole latents
            enable_vae_tiling(vae, size)
            assert vae.encode(x).latent_dist.mode().shape == whole.shape, size
        enable_vae_tiling(vae, 0)
        assert not vae.use_tiling and torch.equal(vae.encode(x).latent_dist.mode(), whole)
        # the tiled encode is exactly 32 px image tiles every 24 px, their 8-latent-px encodes blended linearly over
        # 2 latent px and cut to 6: diffusers' scheme, written out, with the sizes set above
        rows = [[vae.encode(x[..., i : i + 32, j : j + 32]).latent_dist.mode() for j in range(0, 56, 24)]
                for i in range(0, 48, 24)]
        ramp = torch.arange(2) / 2
        for i, row in enumerate(rows):
            for j, tile in enumerate(row):
                if i > 0:
                    tile[..., :2, :] = rows[i - 1][j][..., -2:, :] * (1 - ramp[:, None]) + tile[..., :2, :] * ramp[:, None]
                if j > 0:
                    tile[..., :2] = row[j - 1][..., -2:] * (1 - ramp) + tile[..., :2] * ramp
        ref = torch.cat([torch.cat([t[..., :6, :6] for t in row], -1) for row in rows], -2)
    assert tiled.shape == whole.shape == ref.shape and not torch.equal(tiled, whole)
    torch.testing.assert_close(tiled, ref, atol=1e-5, rtol=0)
