"""Dry runs of the paper-scale configs through their training commands: 2 optimizer steps, the checkpoint, and a
resume (that trains one step more, except in the default suite's run of configs/isr.yaml, whose resume loads the
checkpoint and finishes).

Only what needs weights is swapped: the models for tiny SD-shaped ones (tvt.testing: the SD 2.1 folder, and a
VAE-D4 of tiny widths through ``vae_kwargs``), the LPIPS VGG backbone (tests/tiny_lpips.py) and the RAM tagger
(tests/tiny_ram.py) for tiny stand-ins. The data root and weights root are small folders laid out as the configs
name them.
Everything else is the config's own: precision (fp16 as a GPU runs it: float16 autocast and accelerate's default
loss scaler, tests/amp_emulation.py), optimizers, clipping, accumulation, degradation, prompts, logging
(tensorboard, metrics), checkpoints. One size key is set, ``data.crop_size=80`` (the configs' 512): a CPU step
of even the tiny models at 512 takes seconds, and no code path depends on the size (the D4 latent still splits
into the official 2x2 VSD patches, the degradation still ends at crop/4); 80 is the smallest multiple of 16 the
Real-ESRGAN degradation accepts (74 px).
"""
import importlib
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from amp_emulation import emulate_fp16, fresh_accelerate_state  # noqa: F401 (the fixture below)
from PIL import Image
from tiny_lpips import install_tiny_lpips_backbone
from tiny_ram import install_tiny_ram

from tvt.testing import tiny_vae_d4_kwargs
from tvt.train.checkpoints import checkpoints

CROP = 80  # the size key set (see the module docstring)
pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")
TINY_D4 = "vae_kwargs={" + ", ".join(f"{k}: {list(v) if isinstance(v, tuple) else v}"
                                     for k, v in tiny_vae_d4_kwargs().items()) + "}"


@pytest.fixture(scope="module")
def roots(tmp_path_factory, drealsr):
    """A data root with the configs' file lists and RealSR folders (small images), and a weights root whose RAM
    file the stand-in tagger 'loads'."""
    root = tmp_path_factory.mktemp("roots")
    hr = sorted((drealsr / "HR").glob("*.png"))
    for name, size, files in (("lsdir", 192, hr[:3]), ("ffhq10k", 100, hr[3:5]), ("openimage", 160, hr[5:8])):
        folder = root / "data" / name
        folder.mkdir(parents=True)
        for p in files:
            Image.open(p).convert("RGB").resize((size, size), Image.BICUBIC).save(folder / p.name)
        (root / "data" / "lists").mkdir(exist_ok=True)
        (root / "data" / "lists" / f"{name}.txt").write_text("".join(f"../{name}/{p.name}\n" for p in files))
    for sub, size in (("HR", CROP), ("LR", CROP // 4)):
        (root / "data" / "RealSR" / sub).mkdir(parents=True)
        for p in hr[8:10]:
            Image.open(p).convert("RGB").resize((size, size), Image.BICUBIC).save(root / "data/RealSR" / sub / p.name)
    (root / "weights").mkdir()
    (root / "weights" / "ram_swin_large_14m.pth").write_bytes(b"stand-in")
    return root


# config, command, the overrides that swap models and weights (the run folder, steps and size come on top)
CASES = {
    "isr": ("configs/isr.yaml", "train_isr", []),
    "vae_stage1": ("configs/vae_stage1.yaml", "train_vae_stage1", [TINY_D4]),
    "vae_stage2": ("configs/vae_stage2.yaml", "train_vae_stage2", [TINY_D4]),
    "vae_t1": ("configs/ablations/vae_t1.yaml", "train_vae_ablation", [TINY_D4]),
    "vae_t2": ("configs/ablations/vae_t2.yaml", "train_vae_ablation", [TINY_D4]),
}
EARLIER_RUN = {"isr": "vae_stage2", "vae_stage2": "vae_stage1"}  # the config's latest:<run> input: a tiny VAE-D4


def dry_run(name, tmp_path, monkeypatch, roots, tiny_sd, tiny_vae_d4, resumed_steps=1):
    """The command of ``name`` twice: 2 steps from scratch, then train.resume=latest for ``resumed_steps`` more
    (0: it loads the checkpoint and finishes). Returns the run folder."""
    from accelerate.state import AcceleratorState

    config, command, swaps = CASES[name]
    monkeypatch.setenv("TVT_DATA", str(roots / "data"))
    monkeypatch.setenv("TVT_WEIGHTS", str(roots / "weights"))
    install_tiny_lpips_backbone(monkeypatch, tmp_path / "torch_home")
    out = tmp_path / "runs"
    if name in EARLIER_RUN:
        shutil.copytree(tiny_vae_d4, out / f"000-{EARLIER_RUN[name]}" / "export")
    main = importlib.import_module(f"tvt_scripts.{command}").main
    args = ["--config", str(Path(__file__).parents[1] / config), f"sd_model={tiny_sd}", *swaps,
            f"data.crop_size={CROP}", f"train.output_dir={out}"]
    assert main([*args, "train.max_steps=2"]) == 0
    AcceleratorState._reset_state()  # a new process in practice
    assert main([*args, f"train.max_steps={2 + resumed_steps}", "train.resume=latest"]) == 0
    (run,) = [p for p in out.iterdir() if not p.name.startswith("000-")] if name in EARLIER_RUN else out.iterdir()
    return run


def check_run(run: Path, fp16: bool, steps: int = 3):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, steps + 1))  # the resumed run continued, nothing repeated
    assert all(all(v == v and abs(v) != float("inf") for k, v in r.items()) for r in rows)
    assert [c.name for c in checkpoints(run)] == [f"checkpoint-{s}" for s in sorted({2, steps})]
    state = json.loads((checkpoints(run)[-1] / "trainer_state.json").read_text())
    assert state["step"] == steps and ("scaler.pt" in state["files"]) == fp16  # the loss scaler is checkpointed
    assert ("loss_scale" in rows[0]) == fp16
    assert list((run / "logs").rglob("events.out.tfevents.*"))  # tensorboard, as configured
    assert (run / "export").is_dir()
    return rows, state


@pytest.mark.parametrize("resumed_steps", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_isr_yaml_dry_run_fp16(resumed_steps, tmp_path, monkeypatch, roots, tiny_sd, tiny_vae_d4):
    """configs/isr.yaml as a GPU runs it (fp16 with accelerate's default loss scaler, two optimizers, clipping, 2
    micro-batches per step, the Real-ESRGAN degradation in 4 workers, RAM tags, validation on RealSR), through
    scripts/train_isr.py: it trains, checkpoints and resumes (the default suite: the resumed run loads the
    checkpoint and finishes; slow: it trains a step more). Every halving of the loss scale is a counted skipped
    step (its first steps overflow float16, as on a GPU). The generator and LPIPS compute in float16, the
    fake-score UNet in float32 outside autocast, the real UNet in float16 (the release's, tvt.train.precision)."""
    from tvt.train.isr import ISRStage

    emulate_fp16(monkeypatch)
    taggers = install_tiny_ram(monkeypatch)
    seen, setup = {}, ISRStage.setup

    def observed_setup(stage, accelerator):  # record what dtype each model's first conv computes in
        setup(stage, accelerator)
        models = {"generator": accelerator.unwrap_model(stage.generator).unet, "fake score": stage.vsd.fake_unet,
                  "real score": stage.vsd.real_unet, "lpips": stage.lpips}
        for label, model in models.items():
            conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
            conv.register_forward_hook(lambda m, i, o, label=label: seen.setdefault(label, set()).add(o.dtype))

    monkeypatch.setattr(ISRStage, "setup", observed_setup)
    run = dry_run("isr", tmp_path, monkeypatch, roots, tiny_sd, tiny_vae_d4, resumed_steps=resumed_steps)
    rows, state = check_run(run, fp16=True, steps=2 + resumed_steps)
    assert state["scaler_skipped"] == math.log2(2.0 ** 16 / rows[-1]["loss_scale"])  # accelerate's initial 2^16
    assert seen == {"generator": {torch.float16}, "fake score": {torch.float32}, "real score": {torch.float16},
                    "lpips": {torch.float16}}
    assert {"l2", "lpips", "vsd", "fake_diffusion"} <= rows[0].keys() and rows[0]["loss_scale"] > 0
    assert taggers and all(t.files[0].endswith("ram_swin_large_14m.pth") for t in taggers)  # the configured file
    assert all(s[1] == torch.float32 for t in taggers for s in t.seen)  # CPU: fp32 (fp16 on CUDA, test below)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vae_stage1", "vae_stage2", "vae_t1", "vae_t2"])
def test_vae_config_dry_run(name, tmp_path, monkeypatch, roots, tiny_sd, tiny_vae_d4):
    """The VAE stages' and Table 6 ablations' configs (fp32, LDM's accumulation of 2 and Adam, no clipping, the
    discriminator not started yet as at the start of a paper run), through their commands: train, checkpoint,
    resume."""
    emulate_fp16(monkeypatch)  # acts only on fp16 configs
    check_run(dry_run(name, tmp_path, monkeypatch, roots, tiny_sd, tiny_vae_d4), fp16=False)


def test_training_tagger_runs_in_fp16_on_cuda(monkeypatch, roots):
    """The release tags training crops with RAM in fp16 (train.py:139, 181) and at inference in fp32: the
    extractor takes the dtype it is given, weights and input."""
    from tvt.prompts import PromptSpec, build_prompt_extractor
    from tvt.train.precision import tagger_dtype

    assert tagger_dtype(torch.device("cuda")) == torch.float16 and tagger_dtype(torch.device("cpu")) == torch.float32
    taggers = install_tiny_ram(monkeypatch)
    spec = PromptSpec(extractor="ram", ram_weights=str(roots / "weights" / "ram_swin_large_14m.pth"))
    images = torch.rand(2, 3, 40, 40)
    assert len(build_prompt_extractor(spec).set_dtype(torch.float16)(images)) == 2
    assert len(build_prompt_extractor(spec)(images)) == 2
    assert [s[:2] for t in taggers for s in t.seen] == [(torch.float16, torch.float16), (torch.float32, torch.float32)]
