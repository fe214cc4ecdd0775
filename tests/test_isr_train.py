"""One-step ISR training on tiny models: the L2 loss falls, the right parameters train, export loads in the pipeline."""
import json

import pytest
from conftest import small_hr_folder
import torch

from tvt.config import load_config
from tvt.models.loading import MissingWeightsError
from tvt.prompts import build_prompt_extractor
from tvt.train.core import Trainer
from tvt.train.isr import ISRConfig, ISRStage


@pytest.fixture(scope="module")
def hr_dir(tmp_path_factory, drealsr):
    return small_hr_folder(drealsr, tmp_path_factory.mktemp("hr"), 4, 128)


def _run(tmp_path_factory, hr_dir, tiny_sd, tiny_vae_d4, steps):
    out = tmp_path_factory.mktemp("isr")
    cfg = load_config(ISRConfig, None, [
        f"sd_model={tiny_sd}", f"vae_d4={tiny_vae_d4}", f"data.sources=[{hr_dir}]", "data.crop_size=64",
        "data.degradation=tiny", "loss.lpips_backbone=random", "loss.cfg_scale=2.0", "train.batch_size=2",
        "train.grad_accum=1", "train.lr=1e-3", f"train.max_steps={steps}", "train.tracker=none", f"train.ckpt_every={steps}",
        f"train.output_dir={out}", "train.run_name=isr"])
    stage = ISRStage(cfg)
    run = Trainer(stage).fit()
    return stage, run


@pytest.fixture(scope="module")
def isr_run(tmp_path_factory, hr_dir, tiny_sd, tiny_vae_d4):
    return _run(tmp_path_factory, hr_dir, tiny_sd, tiny_vae_d4, steps=3)


@pytest.mark.slow
def test_l2_falls_and_terms_logged(tmp_path_factory, hr_dir, tiny_sd, tiny_vae_d4):
    _, run = _run(tmp_path_factory, hr_dir, tiny_sd, tiny_vae_d4, steps=30)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 30
    assert {"l2", "lpips", "vsd", "fake_diffusion", "loss"} <= rows[0].keys()
    first = sum(r["l2"] for r in rows[:8]) / 8
    last = sum(r["l2"] for r in rows[-8:]) / 8
    assert last < first


def test_all_loss_terms_logged(isr_run):
    _, run = isr_run
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and {"l2", "lpips", "vsd", "fake_diffusion", "loss"} <= rows[0].keys()


def test_only_lora_and_replicated_levels_train(isr_run):
    stage, _ = isr_run
    gen = stage.accelerator.unwrap_model(stage.generator)
    trainable = {n for n, p in gen.named_parameters() if p.requires_grad}
    assert trainable and all(("lora_" in n) or n.startswith(("unet.conv_in", "unet.conv_out", "unet.down_blocks.0.",
                                                               "unet.up_blocks.3.upsamplers.0.", "unet.up_blocks.4."))
                             for n in trainable)
    assert not any(n.startswith("vae.") for n in trainable)  # encoder LoRA off by default
    assert not any(p.requires_grad for p in stage.vsd.real_unet.parameters())


def test_export_loads_in_pipeline_with_same_output(isr_run):
    from tvt.pipeline import TVTPipeline

    stage, run = isr_run
    pipe = TVTPipeline.from_pretrained(run / "export")
    gen = stage.accelerator.unwrap_model(stage.generator).eval()
    lr_up = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        emb, _ = stage.embed(torch.zeros(1, 3, 16, 16))
        ref = gen(lr_up, emb)[0]
        out = pipe.generator(lr_up, emb)[0]
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_ram_extractor_without_weights_names_them(tmp_path):
    with pytest.raises(MissingWeightsError, match="ram_swin_large_14m.pth"):
        build_prompt_extractor("ram", ram_weights=str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="fixed"):
        build_prompt_extractor("clip")
