"""The shared training core on a tiny VAE stage: exact resume after Ctrl-C, logs averaged over accumulation,
checkpoints and damaged ones, run folders and `latest:`, the non-finite guard, the training scripts' command lines."""
import importlib
import json
from pathlib import Path

import pytest
from conftest import small_hr_folder
import torch

from tvt.config import ConfigError, load_config
from tvt.train.core import CheckpointError, NonFiniteLossError, Trainer, checkpoints, resolve_run_path
from tvt.train.vae_transfer import VAETransferConfig, VAETransferStage


@pytest.fixture(scope="module")
def hr_dir(tmp_path_factory, drealsr):
    """Six 64x64 HR images cut from DRealSR (small, so a training step costs little)."""
    return small_hr_folder(drealsr, tmp_path_factory.mktemp("hr"), 6, 64)


def tiny_cfg(out: Path, hr_dir, overrides=()):
    base = ["mode=teacher", f"data.sources=[{hr_dir}]", "data.crop_size=32", "loss.lpips_weight=0.0",
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


def test_ctrl_c_then_resume_matches_an_uninterrupted_run(tmp_path, hr_dir, capsys):
    _, full = fit(tmp_path / "a", hr_dir, "train.max_steps=6", "train.ckpt_every=3")
    with pytest.raises(KeyboardInterrupt):  # not swallowed: the script boundary turns it into one line
        fit(tmp_path / "b", hr_dir, "train.max_steps=6", "train.ckpt_every=3", stage_cls=_InterruptAt5)
    (run,) = (tmp_path / "b" / "runs").iterdir()
    assert [r["step"] for r in rows(run)] == [1, 2, 3, 4] and [c.name for c in checkpoints(run)] == ["checkpoint-3"]
    assert f"train.resume={run}" in capsys.readouterr().err  # how to continue, in one line
    _, resumed = fit(tmp_path / "b", hr_dir, "train.max_steps=6", "train.ckpt_every=3", "train.resume=latest")
    assert resumed == run
    a, b = rows(full), rows(resumed)
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5, 6]  # step 4, logged before the interruption, is not repeated
    assert max(abs(x["loss"] - y["loss"]) for x, y in zip(a, b)) < 1e-6


class _Recorder(VAETransferStage):
    def train_step(self, batch, step):
        logs = super().train_step(batch, step)
        self.seen = getattr(self, "seen", []) + [float(logs["loss"])]
        return logs


def test_logs_are_means_over_the_accumulation_window_and_the_run_folder_is_printed(tmp_path, hr_dir, capsys):
    stage, run = fit(tmp_path, hr_dir, "train.max_steps=2", "train.grad_accum=2", stage_cls=_Recorder)
    s = stage.seen
    assert len(s) == 4 and s[0] != s[1]
    assert [r["loss"] for r in rows(run)] == pytest.approx([(s[0] + s[1]) / 2, (s[2] + s[3]) / 2], rel=1e-6)
    assert capsys.readouterr().out.count(f"run folder: {run}") == 2  # at start and at end


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


def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_folder(tmp_path, hr_dir, capsys):
    with pytest.raises(ConfigError, match="mode"):
        fit(tmp_path, hr_dir, "mode=bogus")  # fails in the stage's setup, after the run folder was made
    assert list((tmp_path / "runs").iterdir()) == []
    assert "removed" in capsys.readouterr().err


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
        logs = super().train_step(batch, step)
        self.calls += 1
        if self.calls == 2:
            logs["loss"] = torch.tensor(float("nan"))
            for p in self.vae.parameters():
                if p.grad is not None:
                    p.grad.fill_(float("nan"))
        return logs


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
