"""Transfer VAE Training stages on tiny models: who learns, losses fall, the adaptive GAN weight."""
import json

import pytest
from conftest import small_hr_folder
import torch

from tvt.config import load_config
from tvt.losses.vae_loss import adaptive_weight
from tvt.models.vae import load_vae_d8
from tvt.train.core import Trainer
from tvt.train.vae_eval import evaluate_vae, latent_alignment, main as eval_vae_main, psnr_y, rgb_to_y
from tvt.train.vae_transfer import VAETransferConfig, VAETransferStage


@pytest.fixture(scope="module")
def hr_dir(tmp_path_factory, drealsr):
    return small_hr_folder(drealsr, tmp_path_factory.mktemp("hr"), 4, 64)


def _cfg(tmp_path, hr_dir, tiny_sd, mode, extra=()):
    return load_config(VAETransferConfig, None, [
        f"mode={mode}", f"sd_model={tiny_sd}", f"data.sources=[{hr_dir}]", "data.crop_size=32",
        "vae_kwargs={block_out_channels: [16, 32, 32], norm_num_groups: 8}", "loss.lpips_backbone=random",
        "loss.lpips_weight=0.1", "loss.disc_ndf=8", "train.batch_size=2", "train.lr=2e-3", "train.tracker=none",
        f"train.output_dir={tmp_path}", f"train.run_name={mode}", "train.ckpt_every=1000", *extra])


def _first_last(run, key="l1", k=5):
    rows = [json.loads(line)[key] for line in (run / "metrics.jsonl").read_text().splitlines()]
    return sum(rows[:k]) / k, sum(rows[-k:]) / k


def test_stage1_then_stage2_learn_only_their_half(tmp_path, hr_dir, tiny_sd):
    d8_before = load_vae_d8(tiny_sd).state_dict()
    s1 = VAETransferStage(_cfg(tmp_path, hr_dir, tiny_sd, "stage1", ["train.max_steps=30", "loss.disc_start=20"]))
    run1 = Trainer(s1).fit()
    first, last = _first_last(run1)
    assert last < first  # the decoder learns to invert the teacher's latent
    rows = [json.loads(line) for line in (run1 / "metrics.jsonl").read_text().splitlines()]
    assert "d_loss" not in rows[10] and "d_loss" in rows[-1] and rows[-1]["d_weight"] >= 0  # GAN after disc_start
    # only the decoder side changed: the D4 encoder is still at its random init (same seed -> same init)
    torch.manual_seed(0)
    from tvt.models.vae import build_vae_d4

    fresh = build_vae_d4("d4", block_out_channels=(16, 32, 32), norm_num_groups=8)
    trained = s1.vae.state_dict()
    assert all(torch.equal(trained[k], v) for k, v in fresh.state_dict().items() if k.startswith(("encoder.", "quant_conv.")))
    assert not torch.equal(trained["decoder.conv_out.weight"], fresh.state_dict()["decoder.conv_out.weight"])
    d8_after = load_vae_d8(tiny_sd).state_dict()
    assert all(torch.equal(d8_before[k], d8_after[k]) for k in d8_before)  # the D8 teacher is never touched

    s2 = VAETransferStage(_cfg(tmp_path, hr_dir, tiny_sd, "stage2", ["train.max_steps=30", f"decoder_from={run1 / 'export'}"]))
    run2 = Trainer(s2).fit()
    first, last = _first_last(run2)
    assert last < first
    dec1 = {k: v for k, v in s1.vae.state_dict().items() if k.startswith(("decoder.", "post_quant_conv."))}
    dec2 = s2.vae.state_dict()
    assert all(torch.equal(v, dec2[k]) for k, v in dec1.items())  # stage 2 keeps the stage-1 decoder frozen


def test_adaptive_weight_equals_hand_computation():
    w = torch.randn(4, 3, requires_grad=True)
    x = torch.randn(5, 3)
    rec = (x @ w.T).pow(2).mean()
    g = -(x @ w.T).sin().mean()
    gr = torch.autograd.grad(rec, w, retain_graph=True)[0]
    gg = torch.autograd.grad(g, w, retain_graph=True)[0]
    expected = (gr.norm() / (gg.norm() + 1e-4)).clamp(0, 1e4) * 0.5
    torch.testing.assert_close(adaptive_weight(rec, g, w, 0.5), expected)


def test_metrics_helpers():
    x = torch.rand(2, 3, 8, 8)
    y = rgb_to_y(x)
    torch.testing.assert_close(y, (16 + 65.481 * x[:, :1] + 128.553 * x[:, 1:2] + 24.966 * x[:, 2:]) / 255)
    assert psnr_y(x, x).min() > 90
    z = torch.randn(2, 4, 4, 4)
    al = latent_alignment(z, z)
    assert torch.allclose(al["rel_l2"], torch.zeros(2)) and torch.allclose(al["cosine"], torch.ones(2))


def test_eval_vae_cli(tmp_path, hr_dir, tiny_sd, tiny_vae_d4, capsys):
    out = tmp_path / "r.json"
    assert eval_vae_main(["--vae", f"tvt={tiny_vae_d4}", "--data", str(hr_dir), "--d8", str(tiny_sd), "--crop", "32",
                          "--num", "2", "--lpips-backbone", "random", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert set(rows) == {"vae_d8", "tvt"}
    assert {"psnr_y", "ssim_y", "lpips", "rel_l2", "cosine"} <= set(rows["tvt"])
    assert "rel_l2" not in rows["vae_d8"]
