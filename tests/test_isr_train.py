"""One-step ISR training on tiny models: it learns, the right parameters train, export loads in the pipeline,
and the export is prompted at inference the way it was trained (a fake tagger stands in for RAM/DAPE); the LR
pairs are made in the data loader's workers; frozen weights stored in bf16 train exactly as fp32 ones."""
import itertools
import json
import shutil

import pytest
from conftest import small_hr_folder
import torch

from tvt.config import load_config
from tvt.errors import MissingWeightsError
from tvt.prompts import PromptExtractor, PromptSpec, build_prompt_extractor, register_extractor
from tvt.train.isr import ISRConfig, ISRStage
from tvt.train.memory import memory_by_category
from tvt.train.trainer import Trainer


class FakeTagger(PromptExtractor):
    """Tags from the image brightness; records the shape of every batch it tags."""

    calls: list = []

    def __call__(self, images):
        FakeTagger.calls.append(tuple(images.shape))
        return ["bright" if float(im.mean()) > 0.5 else "dark" for im in images]


register_extractor("fake", lambda spec, device: FakeTagger())


@pytest.fixture(scope="module")
def hr_dir(tmp_path_factory, drealsr):
    return small_hr_folder(drealsr, tmp_path_factory.mktemp("hr"), 4, 128)


def _cfg(tmp_path_factory, hr_dir, tiny_sd, tiny_vae_d4, *overrides) -> ISRConfig:
    """Tiny ISR training whose VAE-D4 is named as the next stage names it: the newest finished vae_stage2 run."""
    out = tmp_path_factory.mktemp("runs")
    shutil.copytree(tiny_vae_d4, out / "000-vae_stage2" / "export")
    return load_config(ISRConfig, [
        f"sd_model={tiny_sd}", "vae_d4=latest:vae_stage2", f"data.sources=[{hr_dir}]", "data.crop_size=64",
        "data.degradation=tiny", "loss.lpips_backbone=random", "loss.cfg_scale=2.0", "train.batch_size=2",
        "train.grad_accum=1", "train.lr=1e-3", "train.tracker=none", f"train.output_dir={out}", "train.run_name=isr",
        "prompt.extractor=fake", "inference_prompt.extractor=fake", "inference_prompt.positive=clean",
        "inference_prompt.template='{tags}, {positive},'", *overrides])


@pytest.fixture(scope="module")
def isr_run(tmp_path_factory, hr_dir, tiny_sd, tiny_vae_d4):
    """Two steps whose LR pairs are made in a data loader worker."""
    stage = ISRStage(_cfg(tmp_path_factory, hr_dir, tiny_sd, tiny_vae_d4, "train.max_steps=2", "train.ckpt_every=2",
                          "train.num_workers=1"))
    return stage, Trainer(stage).fit()


def test_a_few_steps_on_a_fixed_batch_lower_the_l2(tmp_path_factory, hr_dir, tiny_sd, tiny_vae_d4):
    """The whole loss (L2 + LPIPS + VSD) through the Trainer's optimizer step, on one batch: the L2 falls. The
    VAE posterior's mean is used, so without learning the L2 would not move at all."""
    cfg = _cfg(tmp_path_factory, hr_dir, tiny_sd, tiny_vae_d4, "sample_posterior=false", "train.batch_size=1")
    trainer = Trainer(ISRStage(cfg))
    batch = next(trainer.start())
    l2 = [trainer.optimizer_step(itertools.repeat(batch))["l2"] for _ in range(3)]  # each: the L2 before its update
    assert l2[2] < 0.97 * l2[0], l2  # two updates at lr 1e-3 take off 14 %; at lr 0 it stays equal


@pytest.fixture
def bf16_process():
    """accelerate keeps one mixed-precision setting per process: this test's bf16, then back to unset."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()
    yield
    AcceleratorState._reset_state()


def test_frozen_weights_in_bf16_train_exactly_as_fp32_ones(tmp_path_factory, hr_dir, tiny_sd, tiny_vae_d4, bf16_process):
    """bf16 mixed precision (CPU autocast): one optimizer step with the frozen Linear/Conv weights stored in bf16
    (frozen_dtype=compute) and one with them in fp32 give the same losses and the same updated weights (autocast
    rounds those weights to bf16 at every call anyway; tolerance 0, observed equal); trainable parameters are
    fp32, the frozen Linear/Conv weights of the generator's UNet, the text encoder and LPIPS bf16, the VAE and the
    fake-score UNet (computed in fp32 outside autocast, as official) fp32; the parameter memory saved is exactly
    2 bytes per stored weight."""
    steps = {}
    for frozen in ("compute", "fp32"):
        cfg = _cfg(tmp_path_factory, hr_dir, tiny_sd, tiny_vae_d4, "train.mixed_precision=bf16", "train.batch_size=1",
                   f"frozen_dtype={frozen}", "train.gradient_checkpointing=true")
        trainer = Trainer(ISRStage(cfg))
        batch = next(trainer.start())
        logs = trainer.optimizer_step(itertools.repeat(batch))
        steps[frozen] = trainer.stage, {k: v for k, v in logs.items() if not k.startswith("data_wait")}
    (low, low_logs), (full, full_logs) = steps["compute"], steps["fp32"]
    assert low_logs == full_logs
    for a, b in ((low.generator, full.generator), (low.vsd.fake_unet, full.vsd.fake_unet)):
        trained = [(p, q) for p, q in zip(a.parameters(), b.parameters()) if p.requires_grad]
        assert trained and all(p.dtype == torch.float32 and torch.equal(p, q) for p, q in trained)
    unet = low.accelerator.unwrap_model(low.generator).unet
    for model in (unet, low.text_encoder, low.lpips):
        frozen = {n: p.dtype for n, p in model.named_parameters() if not p.requires_grad}
        assert frozen and all(d == torch.bfloat16 for n, d in frozen.items() if "norm" not in n and "embedding" not in n)
    for model in (low.vae, low.vsd.fake_unet):  # official: the VAE and the fake score in fp32
        assert all(p.dtype == torch.float32 for p in model.parameters())
    models = lambda st: [st.accelerator.unwrap_model(st.generator).unet, st.text_encoder, st.lpips]  # noqa: E731
    saved = memory_by_category(models(full))["frozen"] - memory_by_category(models(low))["frozen"]
    stored = sum(p.numel() for m in models(low) for p in m.parameters() if p.dtype == torch.bfloat16)
    assert saved == 2 * stored and saved > 0.4 * memory_by_category(models(full))["frozen"]


def test_all_loss_terms_logged_and_the_vae_run_recorded(isr_run):
    _, run = isr_run
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and {"l2", "lpips", "vsd", "fake_diffusion", "loss", "data_wait", "data_wait_share"} <= rows[0].keys()
    assert f"vae_d4: {run.parent / '000-vae_stage2' / 'export'}" in (run / "config.yaml").read_text()


def test_only_lora_and_replicated_levels_train(isr_run):
    stage, _ = isr_run
    gen = stage.accelerator.unwrap_model(stage.generator)
    trainable = {n for n, p in gen.named_parameters() if p.requires_grad}
    assert trainable and all(("lora_" in n) or n.startswith(("unet.conv_in", "unet.conv_out", "unet.down_blocks.0.",
                                                               "unet.up_blocks.3.upsamplers.0.", "unet.up_blocks.4."))
                             for n in trainable)
    assert not any(n.startswith("vae.") for n in trainable)  # encoder LoRA off by default
    assert not any(p.requires_grad for p in stage.vsd.real_unet.parameters())


def test_validation_runs_the_pipelines_own_restoration(isr_run, tmp_path):
    """ISR validation scores what the inference pipeline would output (PIL bicubic, padding, AdaIN colour fix), not
    a restoration of its own: its PSNR-Y equals the exported pipeline's on the same pair and prompt."""
    from tvt.inference import TVTPipeline
    from tvt.io import save_image
    from tvt.metrics.image import psnr_y

    stage, run = isr_run
    hr = torch.rand(1, 3, 4, 4).repeat_interleave(16, -1).repeat_interleave(16, -2)  # (1, 3, 64, 64), blocky
    lr = torch.nn.functional.avg_pool2d(hr, 4)  # (1, 3, 16, 16)
    for name, im in (("HR", hr), ("LR", lr)):
        save_image(im[0], tmp_path / name / "a.png")
    stage.cfg.data.val_hr, stage.cfg.data.val_lr = str(tmp_path / "HR"), str(tmp_path / "LR")
    stage.cfg.train.tracker = "none"
    try:
        val = stage.validate(2, run)
    finally:
        stage.cfg.data.val_hr = stage.cfg.data.val_lr = None
    lr8, hr8 = (torch.round(t * 255) / 255 for t in (lr, hr))  # what the PNGs hold
    prompt = stage.cfg.prompt.text(FakeTagger()(lr8)[0])  # validation prompts as training does (tags of the LR)
    pipe = TVTPipeline.from_pretrained(run / "export", process_size=0, prompt_extractor=None)
    sr = pipe(lr8, prompt=prompt, upscale=4, output_type="pt").images
    assert val["psnr_y"] == pytest.approx(float(psnr_y(sr, hr8).mean()), abs=1e-3)


def test_export_loads_in_pipeline_with_same_output(isr_run):
    from tvt.inference import TVTPipeline

    stage, run = isr_run
    pipe = TVTPipeline.from_pretrained(run / "export")
    gen = stage.accelerator.unwrap_model(stage.generator).eval()
    lr_up = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        emb, _ = stage.embed(torch.zeros(1, 3, 16, 16))
        torch.manual_seed(0)  # the same posterior sample for both
        ref = gen(lr_up, emb)[0]
        torch.manual_seed(0)
        out = pipe.generator(lr_up, emb)[0]
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_ram_extractor_without_weights_names_them(tmp_path):
    with pytest.raises(MissingWeightsError, match="ram_swin_large_14m.pth"):
        build_prompt_extractor(PromptSpec(extractor="ram", ram_weights=str(tmp_path / "missing.pth")))
    with pytest.raises(MissingWeightsError, match="DAPE.pth"):
        build_prompt_extractor(PromptSpec(extractor="ram", ram_weights=__file__, dape_weights=str(tmp_path / "no.pth")))
    with pytest.raises(ValueError, match="fixed"):
        build_prompt_extractor(PromptSpec(extractor="clip"))


def test_official_settings_are_what_trains(isr_run):
    """LoRA alpha 8 (scaling 2) on generator and fake UNet; only the fake UNet's "others" adapter learns, as in the
    official code; AdamW weight decay 1e-2; t = 1; the training prompt is f"{tags}, " of the HR crop."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    stage, _ = isr_run
    gen = stage.accelerator.unwrap_model(stage.generator)
    fake = stage.accelerator.unwrap_model(stage.vsd.fake_unet)
    for model in (gen.unet, fake):
        assert {m.scaling[a] for m in model.modules() if isinstance(m, BaseTunerLayer) for a in m.scaling} == {2.0}
    fake_targets = {n for n, m in fake.named_modules() if isinstance(m, BaseTunerLayer)}
    assert fake_targets and all(n.startswith(("mid_block.", "conv_out")) for n in fake_targets)
    assert gen.timestep == 1 and gen.sample_posterior
    assert all(g["weight_decay"] == 1e-2 for opt in stage.optimizers for g in opt.param_groups)
    assert stage.cfg.prompt.text("dark") == "dark, "


def test_training_target_is_the_plain_hr_crop(isr_run):
    """Official OSEDiff/TVT loaders leave USM out: L2/LPIPS regress to the HR crop itself, not a sharpened one.
    The pair is made per sample where the item is made (the data loader's workers), seeded by its position."""
    stage, _ = isr_run
    hr = torch.rand(3, 64, 64)
    item = stage.sample_transform()({"hr": hr, "position": 0})
    assert torch.equal(item["gt"], hr) and not stage.degradation.cfg.use_usm
    assert item["lr_up"].shape == hr.shape and item["lr"].shape == (3, 16, 16)
    assert stage.degradation.seed == stage.cfg.train.seed
    assert not stage.train_dataset.use_rot  # official augmentation: horizontal flip only


def test_export_records_its_prompting_and_infer_uses_it(isr_run, tmp_path):
    """Trained with tags -> the export records the tagger -> scripts/infer.py tags each upscaled LR with it."""
    import importlib

    from PIL import Image

    from tvt.inference import TVTPipeline

    stage, run = isr_run
    cfg = json.loads((run / "export" / "tvt_config.json").read_text())
    assert cfg["prompt"]["extractor"] == "fake" and cfg["prompt"]["template"] == "{tags}, {positive},"
    assert TVTPipeline.from_pretrained(run / "export").prompts_for(torch.ones(1, 3, 8, 8)) == ["bright, clean,"]
    infer = importlib.import_module("tvt_scripts.infer").main
    (tmp_path / "in").mkdir()
    Image.new("RGB", (16, 12), (250, 250, 250)).save(tmp_path / "in" / "white.png")
    # process_size 0: the image runs at its own size (the official 512 px is test_pipeline's; here it costs 30 s)
    args = ["-i", str(tmp_path / "in"), "--model", str(run / "export"), "--process_size", "0"]
    FakeTagger.calls.clear()
    assert infer(args + ["-o", str(tmp_path / "out")]) == 0
    assert FakeTagger.calls == [(1, 3, 48, 64)]  # the LR upscaled x4
    assert (tmp_path / "out" / "white.png").is_file()
    FakeTagger.calls.clear()
    assert infer(args + ["-o", str(tmp_path / "out2"), "--prompt_extractor", "none"]) == 0
    assert FakeTagger.calls == []
