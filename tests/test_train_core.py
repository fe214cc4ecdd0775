"""The shared training core on a tiny VAE stage: exact resume after Ctrl-C, logs averaged over accumulation,
checkpoints and damaged ones, run folders and `latest:`, the non-finite guard, the training scripts' command lines;
the per-sample transform in the data loader's workers, the data-wait log, frozen weights in the compute dtype."""
import importlib
import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import small_hr_folder
import torch

from tvt.config import ConfigError, load_config
from tvt.data.datasets import HRImageDataset
from tvt.data.degradation import DegradeSample, RealESRGANDegradation, load_degradation_config
from tvt.errors import CheckpointError, NonFiniteLossError
from tvt.train.checkpoints import checkpoints
from tvt.train.data_order import make_dataloader
from tvt.train.memory import memory_by_category, store_frozen_weights
from tvt.train.optim import make_optimizer
from tvt.train.runs import resolve_run_path
from tvt.train.train_config import TrainConfig
from tvt.train.trainer import Trainer
from tvt.train.vae_transfer import VAETransferConfig, VAETransferStage


@pytest.fixture(scope="module")
def hr_dir(tmp_path_factory, drealsr):
    """Six 64x64 HR images cut from DRealSR (small, so a training step costs little)."""
    return small_hr_folder(drealsr, tmp_path_factory.mktemp("hr"), 6, 64)


def tiny_cfg(out: Path, hr_dir, overrides=()):
    base = ["mode=scratch", "variant=d8", f"data.sources=[{hr_dir}]", "data.crop_size=32", "loss.lpips_weight=0.0",
            "loss.disc_weight=0.0", "train.batch_size=2", "train.lr=1e-3", "train.log_every=1",
            f"train.output_dir={out / 'runs'}", "train.run_name=t", "train.tracker=none",
            "vae_kwargs={block_out_channels: [8, 8, 8, 8], norm_num_groups: 4, layers_per_block: 1}"]
    return load_config(VAETransferConfig, base + list(overrides))


def fit(out: Path, hr_dir, *overrides, stage_cls=VAETransferStage):
    stage = stage_cls(tiny_cfg(out, hr_dir, overrides))
    return stage, Trainer(stage).fit()


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


class _InterruptAt5(VAETransferStage):
    """Ctrl-C in the middle of optimizer step 5."""

    def train_step(self, batch, step):
        if step == 4:
            raise KeyboardInterrupt
        return super().train_step(batch, step)


def test_ctrl_c_then_resume_matches_an_uninterrupted_run(tmp_path, hr_dir, caplog):
    _, full = fit(tmp_path / "a", hr_dir, "train.max_steps=6", "train.ckpt_every=3")
    with pytest.raises(KeyboardInterrupt):  # not swallowed: the script boundary turns it into one line
        fit(tmp_path / "b", hr_dir, "train.max_steps=6", "train.ckpt_every=3", stage_cls=_InterruptAt5)
    (run,) = (tmp_path / "b" / "runs").iterdir()
    assert [r["step"] for r in rows(run)] == [1, 2, 3, 4] and [c.name for c in checkpoints(run)] == ["checkpoint-3"]
    assert f"train.resume={run}" in caplog.text  # how to continue, in one line (logged)
    _, resumed = fit(tmp_path / "b", hr_dir, "train.max_steps=6", "train.ckpt_every=3", "train.resume=latest")
    assert resumed == run
    a, b = rows(full), rows(resumed)
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5, 6]  # step 4, logged before the interruption, is not repeated
    assert max(abs(x["loss"] - y["loss"]) for x, y in zip(a, b)) < 1e-6


class _Recorder(VAETransferStage):
    def train_step(self, batch, step):
        for loss, logs in super().train_step(batch, step):
            self.seen = getattr(self, "seen", []) + [float(logs["loss"])]
            yield loss, logs


def test_logs_are_means_over_the_accumulation_window_and_the_run_folder_is_printed(tmp_path, hr_dir, caplog):
    caplog.set_level(logging.INFO, logger="tvt.train")
    stage, run = fit(tmp_path, hr_dir, "train.max_steps=2", "train.grad_accum=2", stage_cls=_Recorder)
    s = stage.seen
    assert len(s) == 4 and s[0] != s[1]
    assert [r["loss"] for r in rows(run)] == pytest.approx([(s[0] + s[1]) / 2, (s[2] + s[3]) / 2], rel=1e-6)
    assert caplog.text.count(f"run folder: {run}") == 2  # at start and at end (logged)
    # every step says how long it waited for its micro-batches, and which share of the step that was
    assert all(r["data_wait"] >= 0 and 0 <= r["data_wait_share"] <= 1 for r in rows(run))


def test_checkpoints_keep_last_and_are_complete(tmp_path, hr_dir):
    _, run = fit(tmp_path, hr_dir, "train.max_steps=4", "train.ckpt_every=1", "train.keep_last=2")
    assert [p.name for p in checkpoints(run)] == ["checkpoint-3", "checkpoint-4"]
    assert not list((run / "checkpoints").glob("*.tmp"))  # nothing half-written left behind
    ck = run / "checkpoints" / "checkpoint-4"
    state = json.loads((ck / "trainer_state.json").read_text())
    assert state["step"] == 4 and state["files"]["model.safetensors"] == (ck / "model.safetensors").stat().st_size
    assert {"optimizer.bin", "random_states_0.pkl"} <= state["files"].keys()
    assert (run / "config.yaml").is_file() and (run / "export" / "config.json").is_file()


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_damaged_checkpoints_are_refused_naming_the_file(tmp_path, hr_dir):
    _, run = fit(tmp_path, hr_dir, "train.max_steps=3", "train.ckpt_every=1", "train.export=false")
    c1, c2, c3 = checkpoints(run)

    def resume(target, *more):
        return fit(tmp_path, hr_dir, "train.max_steps=4", f"train.resume={target}", *more)

    _truncate(c3 / "model.safetensors")
    with pytest.raises(CheckpointError, match=rf"{c3}.*model\.safetensors.*train\.resume={c2}"):
        resume("latest")
    _truncate(c2 / "random_states_0.pkl")  # accelerate alone would go on without the RNG state
    with pytest.raises(CheckpointError, match=rf"{c2}.*random_states_0\.pkl.*train\.resume={c1}"):
        resume(c2)
    (c1 / "trainer_state.json").write_text('{"step": 1, "nonfin')
    with pytest.raises(CheckpointError, match=r"checkpoint-1.*trainer_state\.json.*no earlier complete one"):
        resume(c1)
    _, fresh = fit(tmp_path / "other", hr_dir, "train.max_steps=1")
    with pytest.raises(CheckpointError, match="cannot resume from"):  # a config that builds other models
        resume(fresh, "vae_kwargs={block_out_channels: [16, 16, 16, 16], norm_num_groups: 4, layers_per_block: 1}")
    assert checkpoints(run) == [c1, c2, c3]  # a refused resume deletes nothing


def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_folder(tmp_path, hr_dir, caplog):
    with pytest.raises(ConfigError, match="mode"):
        fit(tmp_path, hr_dir, "mode=bogus")  # fails in the stage's setup, after the run folder was made
    assert list((tmp_path / "runs").iterdir()) == []
    assert "removed" in caplog.text


def test_latest_names_the_newest_finished_run(tmp_path):
    for name in ("000-vae_stage2/export", "001-vae_stage2/export", "002-vae_stage2", "003-vae_stage1/export"):
        (tmp_path / name).mkdir(parents=True)
    assert resolve_run_path("latest:vae_stage2", tmp_path) == str(tmp_path / "001-vae_stage2" / "export")
    assert resolve_run_path("some/folder", tmp_path) == "some/folder" and resolve_run_path(None, tmp_path) is None
    with pytest.raises(ConfigError, match="no finished run 'isr'"):
        resolve_run_path("latest:isr", tmp_path)


class _NaNAt2(VAETransferStage):
    """Its second micro-batch has a NaN loss and NaN gradients."""

    calls = 0

    def train_step(self, batch, step):
        self.calls += 1
        for loss, logs in super().train_step(batch, step):
            if self.calls == 2:
                loss = loss * float("nan")
                logs = {**logs, "loss": loss.detach()}
            yield loss, logs


def test_nonfinite_loss_halts_or_is_skipped(tmp_path, hr_dir):
    with pytest.raises(NonFiniteLossError, match="loss at step 2"):
        fit(tmp_path / "h", hr_dir, "train.max_steps=3", stage_cls=_NaNAt2)
    assert list((tmp_path / "h" / "runs").iterdir()) == []  # halted before its first checkpoint
    stage, run = fit(tmp_path / "s", hr_dir, "train.max_steps=3", "train.nonfinite=skip", stage_cls=_NaNAt2)
    state = json.loads((checkpoints(run)[-1] / "trainer_state.json").read_text())
    assert (state["step"], state["nonfinite_skipped"]) == (3, 1)
    assert all(torch.isfinite(p).all() for p in stage.vae.parameters())  # the NaN gradients never reached them


@pytest.mark.parametrize("script, wrong", [("train_vae_stage1", "mode=stage2"), ("train_vae_stage2", "mode=stage1"),
                                           ("train_vae_ablation", "mode=stage1")])
def test_vae_scripts_refuse_another_stage(script, wrong, capsys):
    assert importlib.import_module(f"tvt_scripts.{script}").main([wrong]) == 2
    assert "this script trains mode=" in capsys.readouterr().err


def test_training_scripts_list_their_keys_and_stop_on_ctrl_c_in_one_line(tmp_path, monkeypatch, capsys):
    stage2 = importlib.import_module("tvt_scripts.train_vae_stage2")
    assert stage2.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "decoder_from" in out and "(str, 'stage2')" in out and "train.resume" in out

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "fit", interrupted)
    isr = importlib.import_module("tvt_scripts.train_isr")
    assert isr.main([f"train.output_dir={tmp_path}"]) == 130
    assert capsys.readouterr().err.strip().count("\n") == 0


def _take(loader, n):
    it = iter(loader)
    return [next(it) for _ in range(n)]


def test_worker_transform_gives_the_batched_degradation_whatever_the_workers_and_resume_point(hr_dir):
    """The ISR degradation made per sample in 2 workers == in this process == the batched call on the same
    positions, bit for bit; a loader restarted at micro-batch 2 (a resume) continues the same stream."""
    deg_cfg = load_degradation_config("tiny")
    transform = DegradeSample(deg_cfg, seed=5)
    ds = HRImageDataset(hr_dir, crop_size=32, use_rot=False, seed=5)
    one = SimpleNamespace(process_index=0, num_processes=1, device=torch.device("cpu"))
    inline = _take(make_dataloader(ds, TrainConfig(seed=5, batch_size=2), one, transform=transform), 4)
    workers = _take(make_dataloader(ds, TrainConfig(seed=5, batch_size=2, num_workers=2), one, transform=transform), 4)
    resumed = _take(make_dataloader(ds, TrainConfig(seed=5, batch_size=2, num_workers=2), one, 2, transform), 2)
    batched = RealESRGANDegradation(deg_cfg)
    for k, (a, b) in enumerate(zip(inline, workers)):
        assert a["position"].tolist() == [2 * k, 2 * k + 1]
        ref = batched(a["hr"], a["position"], 5, resize_back=True)
        for key in ("hr", "lr", "lr_up", "gt"):
            assert torch.equal(a[key], b[key]) and (key == "hr" or torch.equal(a[key], ref[key])), (k, key)
    for a, b in zip(inline[2:], resumed):
        assert all(torch.equal(a[key], b[key]) for key in ("hr", "lr", "lr_up", "gt", "position"))


def test_adamw_is_fused_on_cuda_only():
    p = torch.nn.Parameter(torch.zeros(3))
    assert not make_optimizer([p], TrainConfig()).defaults.get("fused")  # CPU: torch's default implementation
    if torch.cuda.is_available():
        assert make_optimizer([torch.nn.Parameter(torch.zeros(3, device="cuda"))], TrainConfig()).defaults["fused"]


def test_frozen_linear_and_conv_weights_in_bf16_compute_the_same_under_autocast():
    """Frozen Linear/Conv weights stored in bf16 give bit-identical outputs and gradients under (CPU) bf16
    autocast, which rounds them to bf16 at every call anyway; trainable weights and norms stay fp32."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.GroupNorm(2, 8), torch.nn.Flatten(),
                                torch.nn.Linear(8 * 6 * 6, 4), torch.nn.Linear(4, 2))
    model.requires_grad_(False)
    model[4].requires_grad_(True)  # the trainable layer
    x = torch.randn(2, 3, 8, 8)

    def step(m):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = m(x).float().square().mean()
        out.backward()
        return out.detach(), m[4].weight.grad.clone()

    ref = step(model)
    model[4].weight.grad = None
    before = memory_by_category([model])
    freed = store_frozen_weights(model, torch.bfloat16)
    after = memory_by_category([model])
    assert {n: p.dtype for n, p in model.named_parameters()} == {
        "0.weight": torch.bfloat16, "0.bias": torch.bfloat16, "1.weight": torch.float32, "1.bias": torch.float32,
        "3.weight": torch.bfloat16, "3.bias": torch.bfloat16, "4.weight": torch.float32, "4.bias": torch.float32}
    assert freed == 2 * sum(model[i].weight.numel() + model[i].bias.numel() for i in (0, 3))
    assert before["frozen"] - after["frozen"] == freed and after["trainable"] == before["trainable"]
    out, grad = step(model)
    assert torch.equal(out, ref[0]) and torch.equal(grad, ref[1])
    assert store_frozen_weights(model, torch.float32) == 0  # fp32 training: nothing to do
