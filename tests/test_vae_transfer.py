"""Transfer VAE Training on tiny models: LDM's conventions (lr scaling, summed loss, posterior sampling, adaptive GAN
weight), who learns in which stage, the VAE-D8 teacher variant, and the evaluation helpers."""
import json
import shutil
from pathlib import Path

import pytest
from conftest import small_hr_folder
import torch
from torch import nn

from tvt.config import load_config
from tvt.losses.vae_loss import ReconstructionLoss, VAEGANLoss, adaptive_weight, kl_loss
from tvt.models.vae import build_vae_d4, load_vae_d4, load_vae_d8
from tvt.train.optim import effective_lr
from tvt.train.train_config import TrainConfig
from tvt.train.trainer import Trainer
from tvt.metrics.image import psnr_y, rgb_to_y
from tvt.metrics.vae import latent_alignment, latent_linear_r2
from tvt_scripts.eval_vae import main as eval_vae_main
from tvt.train.vae_transfer import VAETransferConfig, VAETransferStage

D4_KWARGS = "vae_kwargs={block_out_channels: [16, 32, 32], norm_num_groups: 8}"


@pytest.fixture(scope="module")
def hr_dir(tmp_path_factory, drealsr):
    return small_hr_folder(drealsr, tmp_path_factory.mktemp("hr"), 4, 64)


def _cfg(tmp_path, hr_dir, tiny_sd, mode, extra=()):
    return load_config(VAETransferConfig, None, [
        f"mode={mode}", f"sd_model={tiny_sd}", f"data.sources=[{hr_dir}]", "data.crop_size=32", D4_KWARGS,
        "loss.lpips_weight=0", "loss.disc_ndf=8", "train.batch_size=2",
        "train.lr=2e-3", "train.tracker=none", f"train.output_dir={tmp_path}", f"train.run_name={mode}",
        "train.ckpt_every=1000", *extra])


def _setup(cfg):
    """A stage set up on CPU without running the Trainer (one process)."""
    from accelerate import Accelerator

    stage = VAETransferStage(cfg)
    stage.accelerator = Accelerator(cpu=True)
    stage.setup(stage.accelerator)
    return stage


def _batch(hr_dir, n=2, size=32):
    from tvt.io import pil_to_tensor, read_image

    files = sorted(Path(hr_dir).glob("*.png"))[:n]
    return {"hr": torch.stack([pil_to_tensor(read_image(f))[:, :size, :size] for f in files])}


def _backward(stage, batch, step) -> dict:
    """What the Trainer does with a stage's losses, minus the updates: each backpropagated, their logs merged."""
    logs = {}
    for loss, out in stage.train_step(batch, step):
        stage.accelerator.backward(loss)
        logs.update(out)
    return logs


def _opt_params(opt) -> set[int]:
    return {id(p) for g in opt.param_groups for p in g["params"]}


def _ids(*modules) -> set[int]:
    return {id(p) for m in modules for p in m.parameters()}


# ---------------------------------------------------------------------------------------------- lr scaling (LDM main.py)
def test_scale_lr_is_base_times_batch_processes_accum(tmp_path, hr_dir, tiny_sd):
    cfg = TrainConfig(lr=4.5e-6, batch_size=32, grad_accum=2, scale_lr=True)
    assert effective_lr(cfg, num_processes=8) == pytest.approx(4.5e-6 * 32 * 8 * 2)
    assert effective_lr(cfg, 1e-5, num_processes=8) == pytest.approx(1e-5 * 32 * 8 * 2)  # an explicit base lr too
    assert effective_lr(TrainConfig(lr=4.5e-6, batch_size=32, scale_lr=False), num_processes=8) == 4.5e-6
    assert effective_lr(TrainConfig(lr=4.5e-6), 0.0) == 0.0  # an explicit 0.0 (a frozen part) is a value, not unset
    # in a stage: both optimizers (autoencoder and discriminator) get the scaled lr (one process here)
    stage = _setup(_cfg(tmp_path, hr_dir, tiny_sd, "stage1", ["train.lr=1e-5", "train.scale_lr=true",
                                                               "train.grad_accum=3"]))
    assert len(stage.optimizers) == 2
    for opt in stage.optimizers:
        assert opt.param_groups[0]["lr"] == pytest.approx(1e-5 * 2 * 1 * 3)
        assert opt.param_groups[0]["betas"] == (0.5, 0.9) and opt.param_groups[0]["weight_decay"] == 0.0


def test_paper_configs_follow_ldm():
    root = Path(__file__).resolve().parents[1] / "configs"
    for name in ("vae_stage1", "vae_stage2", "ablations/vae_t1", "ablations/vae_t2"):
        cfg = load_config(VAETransferConfig, root / f"{name}.yaml")
        t = cfg.train
        assert (t.lr, t.scale_lr, t.adam_beta1, t.adam_beta2, t.weight_decay, t.max_grad_norm) == (4.5e-6, True, 0.5, 0.9, 0, 0)
        assert effective_lr(t, num_processes=8) == pytest.approx(4.5e-6 * 32 * 8)  # ~1.15e-3 at 32 x 8 GPUs
        assert cfg.loss.reduction == "sum" and cfg.sample_posterior and cfg.d8_latent == "sample"
        if name != "vae_stage1":
            assert cfg.loss.kl_weight == 1e-6


# ---------------------------------------------------------------------------------------------- the loss (LDM contperceptual)
def test_loss_equals_ldm_hand_computation():
    torch.manual_seed(0)
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    x, x_rec = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1
    moments = torch.randn(2, 8, 4, 4)
    post = DiagonalGaussianDistribution(moments)
    rec = ReconstructionLoss(1.0, 0.7, "random", reduction="sum")
    ours = rec(x_rec, x)[0] + 1e-3 * kl_loss(post, x, "sum")
    # LDM LPIPSWithDiscriminator.forward, logvar = 0: per-pixel |x - x_rec| + w * LPIPS (broadcast), summed / B
    p_loss = rec.lpips.net(x, x_rec)  # (B, 1, 1, 1), as taming's LPIPS returns it
    rec_loss = torch.abs(x - x_rec) + 0.7 * p_loss
    nll = torch.sum(rec_loss) / rec_loss.shape[0]
    mean, logvar = moments.chunk(2, dim=1)
    kl = 0.5 * torch.sum(mean.pow(2) + logvar.exp() - 1.0 - logvar, dim=[1, 2, 3])
    torch.testing.assert_close(ours, nll + 1e-3 * torch.sum(kl) / kl.shape[0])
    # "mean" divides reconstruction and KL by the same number: their balance is LDM's
    rec_m = ReconstructionLoss(1.0, 0.0, reduction="mean")
    rec_m.lpips_weight, rec_m.lpips = 0.7, rec.lpips  # the same (random) LPIPS network, built once
    torch.testing.assert_close(rec_m(x_rec, x)[0] / rec(x_rec, x)[0], kl_loss(post, x, "mean") / kl_loss(post, x, "sum"))
    torch.testing.assert_close(kl_loss(post, x, "mean"), kl_loss(post, x, "sum") / (3 * 16 * 16))


# ---------------------------------------------------------------------------------------------- adaptive GAN weight
def test_adaptive_weight_equals_hand_computation():
    w = torch.randn(4, 3, requires_grad=True)
    x = torch.randn(5, 3)
    rec = (x @ w.T).pow(2).mean()
    g = -(x @ w.T).sin().mean()
    gr = torch.autograd.grad(rec, w, retain_graph=True)[0]
    gg = torch.autograd.grad(g, w, retain_graph=True)[0]
    expected = (gr.norm() / (gg.norm() + 1e-4)).clamp(0, 1e4) * 0.5
    got = adaptive_weight(rec, g, w, 0.5)
    torch.testing.assert_close(got, expected)
    assert not got.requires_grad  # detached, as LDM
    # clamp at 1e4: a GAN loss with (almost) no gradient at the last layer
    tiny_g = 1e-12 * (x @ w.T).sum()
    torch.testing.assert_close(adaptive_weight(100 * rec, tiny_g, w, 0.5), torch.tensor(0.5e4))


def test_generator_loss_is_ldm(tmp_path):
    """Total = nll + d_weight * (-mean D(x_rec)) from disc_start on, d_weight from the decoder's last layer; off before."""
    torch.manual_seed(0)
    last = nn.Conv2d(4, 3, 3, padding=1)  # stands in for decoder.conv_out
    h, x = torch.randn(2, 4, 32, 32), torch.rand(2, 3, 32, 32) * 2 - 1
    gan = VAEGANLoss(ReconstructionLoss(1.0, 0.0, reduction="sum"), disc_weight=0.5, disc_start=10, disc_ndf=8)
    x_rec = last(h)
    loss, logs = gan.generator_loss(x_rec, x, 9, last.weight)
    assert "g_loss" not in logs and gan.discriminator_loss(x_rec, x, 9)[0] is None  # factor 0 before disc_start
    torch.testing.assert_close(loss, (x_rec - x).abs().sum() / 2)
    loss, logs = gan.generator_loss(x_rec, x, 10, last.weight)
    nll = (x_rec - x).abs().sum() / 2
    g = -gan.discriminator(x_rec).mean()  # train mode, as in the generator pass: the same batch statistics
    gn = torch.autograd.grad(nll, last.weight, retain_graph=True)[0].norm()
    gg = torch.autograd.grad(g, last.weight, retain_graph=True)[0].norm()
    expected_w = (gn / (gg + 1e-4)).clamp(0, 1e4) * 0.5
    assert float(expected_w) > 0
    torch.testing.assert_close(logs["d_weight"], expected_w, rtol=1e-3, atol=0)
    assert float(logs["g_loss"]) != 0
    torch.testing.assert_close(loss, nll + logs["d_weight"] * logs["g_loss"])
    loss.backward()
    assert all(p.grad is None for p in gan.discriminator.parameters())  # the generator pass never trains D
    d, _ = gan.discriminator_loss(x_rec, x, 10)
    assert d is not None and d.requires_grad


# ---------------------------------------------------------------------------------------------- who learns what
def test_stage1_trains_only_the_decoder(tmp_path, hr_dir, tiny_sd):
    stage = _setup(_cfg(tmp_path, hr_dir, tiny_sd, "stage1", ["loss.disc_start=0"]))
    vae = stage.vae
    assert _opt_params(stage.optimizers[0]) == _ids(vae.decoder, vae.post_quant_conv)
    assert _opt_params(stage.optimizers[1]) == _ids(stage.gan.discriminator)
    assert not any(p.requires_grad for p in stage.vae_d8.parameters())
    _backward(stage, _batch(hr_dir), step=0)
    assert all(p.grad is None for p in stage.vae_d8.parameters())
    assert all(p.grad is None for p in (*vae.encoder.parameters(), *vae.quant_conv.parameters()))
    assert vae.decoder.conv_out.weight.grad.abs().sum() > 0 and vae.post_quant_conv.weight.grad.abs().sum() > 0


def test_stage2_trains_only_the_encoder_and_its_log_variance(tmp_path, hr_dir, tiny_sd, tiny_vae_d4):
    torch.manual_seed(123)  # not the seed of tiny_vae_d4: the encoder is this run's init, the decoder stage 1's
    stage = _setup(_cfg(tmp_path, hr_dir, tiny_sd, "stage2", [f"decoder_from={tiny_vae_d4}"]))
    vae = stage.vae
    stage1 = load_vae_d4(tiny_vae_d4).state_dict()
    assert all(torch.equal(v, stage1[k]) for k, v in vae.state_dict().items() if k.startswith(("decoder.", "post_quant_conv.")))
    assert not torch.equal(vae.encoder.conv_in.weight, stage1["encoder.conv_in.weight"])
    assert stage.cfg.sample_posterior and stage.cfg.loss.kl_weight == 1e-6  # LDM defaults
    assert len(stage.optimizers) == 1 and _opt_params(stage.optimizers[0]) == _ids(vae.encoder, vae.quant_conv)
    batch = _batch(hr_dir)
    x = batch["hr"] * 2 - 1
    with torch.no_grad():
        post = vae.encode(x).latent_dist
        kl_hand = 0.5 * (post.mean.pow(2) + post.var - 1 - post.logvar).sum() / len(x)
    logs = _backward(stage, batch, step=0)
    torch.testing.assert_close(logs["kl"], kl_hand)  # summed over the latent, / B: the reconstruction's reduction
    assert all(p.grad is None for p in (*vae.decoder.parameters(), *vae.post_quant_conv.parameters()))
    latent = vae.config.latent_channels
    grad = vae.quant_conv.weight.grad
    assert grad[:latent].abs().sum() > 0
    assert grad[latent:].abs().sum() > 0  # the log-variance half learns (posterior sampled + KL), as in LDM


def test_stages_train_and_keep_frozen_parts(tmp_path, hr_dir, tiny_sd):
    """End to end through the Trainer: stage 1 leaves the D4 encoder and the D8 alone, stage 2 the decoder."""
    d8_before = load_vae_d8(tiny_sd).state_dict()
    s1 = VAETransferStage(_cfg(tmp_path, hr_dir, tiny_sd, "stage1", ["train.max_steps=4", "loss.disc_start=2",
                                                                      "train.log_every=1"]))
    run1 = Trainer(s1).fit()
    rows = [json.loads(line) for line in (run1 / "metrics.jsonl").read_text().splitlines()]
    assert "d_loss" not in rows[1] and "d_loss" in rows[2] and rows[2]["d_weight"] > 0  # GAN from disc_start on
    trained = load_vae_d4(run1 / "export").state_dict()
    torch.manual_seed(0)  # the stage-1 run's seed: its untouched encoder is this init
    fresh = build_vae_d4("d4", block_out_channels=(16, 32, 32), norm_num_groups=8).state_dict()
    assert all(torch.equal(trained[k], v) for k, v in fresh.items() if k.startswith(("encoder.", "quant_conv.")))
    assert not torch.equal(trained["decoder.conv_out.weight"], fresh["decoder.conv_out.weight"])
    d8_after = load_vae_d8(tiny_sd).state_dict()
    assert all(torch.equal(d8_before[k], d8_after[k]) for k in d8_before)  # the D8 teacher is never touched

    s2 = VAETransferStage(_cfg(tmp_path, hr_dir, tiny_sd, "stage2", ["train.max_steps=3", f"decoder_from={run1 / 'export'}"]))
    run2 = Trainer(s2).fit()
    after2 = load_vae_d4(run2 / "export").state_dict()
    assert all(torch.equal(v, after2[k]) for k, v in trained.items() if k.startswith(("decoder.", "post_quant_conv.")))
    assert not torch.equal(after2["quant_conv.weight"], trained["quant_conv.weight"])


# ---------------------------------------------------------------------------------------------- the VAE-D8 variant
def test_scratch_d8_is_sd_layout_and_loads_as_d8(tmp_path, hr_dir):
    from diffusers import AutoencoderKL

    import tvt.train.vae_transfer as vt

    assert "testing" not in Path(vt.__file__).read_text()  # the library never imports the test fixtures
    cfg = load_config(VAETransferConfig, None, [
        "mode=scratch", "variant=d8", f"data.sources=[{hr_dir}]", "data.crop_size=32", "loss.lpips_weight=0",
        "loss.disc_weight=0", "vae_kwargs={block_out_channels: [8, 8, 8, 8], norm_num_groups: 4}",
        "train.batch_size=2", "train.max_steps=1", "train.tracker=none", f"train.output_dir={tmp_path}"])
    stage = VAETransferStage(cfg)
    run = Trainer(stage).fit()
    assert type(stage.vae) is AutoencoderKL and len(stage.vae.config.block_out_channels) == 4  # 8x, SD's layout
    assert stage.vae.config.layers_per_block == 2 and stage.vae.config.latent_channels == 4
    (tmp_path / "sd").mkdir()
    (run / "export").rename(tmp_path / "sd" / "vae")
    d8 = load_vae_d8(tmp_path / "sd")
    assert d8.encode(torch.zeros(1, 3, 32, 32)).latent_dist.mode().shape == (1, 4, 4, 4)


# ---------------------------------------------------------------------------------------------- evaluation helpers
def test_metrics_helpers():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 8, 8)
    y = rgb_to_y(x)
    torch.testing.assert_close(y, (16 + 65.481 * x[:, :1] + 128.553 * x[:, 1:2] + 24.966 * x[:, 2:]) / 255)
    assert psnr_y(x, x).min() > 90
    z = torch.randn(2, 4, 4, 4)
    al = latent_alignment(z, z)
    assert torch.allclose(al["rel_l2"], torch.zeros(2)) and torch.allclose(al["cosine"], torch.ones(2))
    mix = torch.randn(4, 4)  # the same information in other coordinates: R^2 = 1 although rel_l2 is large
    z8 = torch.einsum("ij,bjhw->bihw", mix, z) + 3.0
    assert latent_linear_r2(z, z8) == pytest.approx(1.0) and latent_alignment(z, z8)["rel_l2"].min() > 0.1
    assert latent_linear_r2(z, torch.randn(2, 4, 4, 4)) < 0.5  # unrelated latents


def test_eval_vae_cli(tmp_path, hr_dir, tiny_sd, tiny_vae_d4, capsys):
    out = tmp_path / "r.json"
    assert eval_vae_main(["--vae", f"tvt={tiny_vae_d4}", "--data", str(hr_dir), "--d8", str(tiny_sd), "--crop", "32",
                          "--num", "2", "--lpips-backbone", "random", "--json", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    rows = json.loads(out.read_text())
    assert set(rows) == {"vae_d8", "tvt"}
    assert {"psnr_y", "ssim_y", "lpips", "rel_l2", "cosine"} <= set(rows["tvt"])
    assert "rel_l2" not in rows["vae_d8"]
    # the values, computed here by hand on the same two 32 px centre crops: PSNR-Y of each VAE's reconstruction
    # (posterior mode) and the D4 latent's distance to the D8 latent of the image upsampled x2
    from tvt.io import list_images, pil_to_tensor, read_image

    crops = []
    for f in list_images(hr_dir)[:2]:
        im = pil_to_tensor(read_image(f))
        t, l = (im.shape[-2] - 32) // 2, (im.shape[-1] - 32) // 2
        crops.append(im[:, t : t + 32, l : l + 32])
    x = torch.stack(crops) * 2 - 1
    d4, d8 = load_vae_d4(tiny_vae_d4).eval(), load_vae_d8(tiny_sd).eval()
    with torch.no_grad():
        for name, vae in (("tvt", d4), ("vae_d8", d8)):
            rec = ((vae.decode(vae.encode(x).latent_dist.mode()).sample + 1) / 2).clamp(0, 1)
            assert rows[name]["psnr_y"] == pytest.approx(float(psnr_y(rec, (x + 1) / 2).mean()), abs=1e-3), name
        z4 = d4.encode(x).latent_dist.mode().flatten(1)
        up2 = torch.nn.functional.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False).clamp(-1, 1)
        z8 = d8.encode(up2).latent_dist.mode().flatten(1)
    assert rows["tvt"]["rel_l2"] == pytest.approx(float(((z4 - z8).norm(dim=1) / z8.norm(dim=1)).mean()), rel=1e-4)
    assert rows["tvt"]["cosine"] == pytest.approx(float(torch.cosine_similarity(z4, z8, dim=1).mean()), abs=1e-5)


def test_eval_vae_cli_finds_latest_runs_and_refuses_bad_input(tmp_path, hr_dir, tiny_vae_d4, capsys):
    for n in ("000", "001"):
        shutil.copytree(tiny_vae_d4, tmp_path / "runs" / f"{n}-vae_stage2" / "export")
    out = tmp_path / "r.json"
    assert eval_vae_main(["--vae", "latest:vae_stage2", "--vae", f"mine={tiny_vae_d4}", f"data={hr_dir}", "crop=32",
                          "num=1", "lpips_backbone=random", f"runs={tmp_path / 'runs'}", f"json={out}"]) == 0
    assert set(json.loads(out.read_text())) == {"001-vae_stage2", "mine"}  # the newest finished run
    assert eval_vae_main(["--vae", str(tiny_vae_d4), f"data={tmp_path / 'nowhere'}"]) == 2
    assert eval_vae_main(["--vae", str(tiny_vae_d4), f"data={hr_dir}", "crop=4096"]) == 2
    assert eval_vae_main([f"data={hr_dir}"]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "smaller than the crop 4096" in err and "--vae" in err
