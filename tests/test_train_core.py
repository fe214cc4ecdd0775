"""The shared training core on a tiny VAE stage: resume exactness, checkpoints, non-finite guard."""
import json
from pathlib import Path

import pytest
from conftest import small_hr_folder
import torch

from tvt.config import ConfigError, load_config
from tvt.train.core import NonFiniteLossError, Trainer, checkpoints
from tvt.train.vae_transfer import VAETransferConfig, VAETransferStage


@pytest.fixture(scope="module")
def hr_dir(tmp_path_factory, drealsr):
    """Six 64x64 HR images cut from DRealSR (small, so a training step costs little)."""
    return small_hr_folder(drealsr, tmp_path_factory.mktemp("hr"), 6, 64)


def tiny_cfg(tmp_path, hr_dir, overrides=()):
    base = ["mode=teacher", f"data.sources=[{hr_dir}]", "data.crop_size=32", "loss.lpips_weight=0.0",
            "loss.disc_weight=0.0", "train.batch_size=2", "train.lr=1e-3", "train.log_every=1",
            f"train.output_dir={tmp_path / 'runs'}", "train.run_name=t", "train.tracker=none",
            "vae_kwargs={block_out_channels: [8, 8, 8, 8], norm_num_groups: 4, layers_per_block: 1}"]
    return load_config(VAETransferConfig, None, base + list(overrides))


def _losses(run_dir: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_resume_reproduces_uninterrupted_run(tmp_path, hr_dir):
    full = Trainer(VAETransferStage(tiny_cfg(tmp_path / "a", hr_dir, ["train.max_steps=6", "train.ckpt_every=3"]))).fit()
    first = Trainer(VAETransferStage(tiny_cfg(tmp_path / "b", hr_dir, ["train.max_steps=3", "train.ckpt_every=3"]))).fit()
    resumed = Trainer(VAETransferStage(tiny_cfg(tmp_path / "b", hr_dir, ["train.max_steps=6", "train.ckpt_every=3",
                                                                         "train.resume=latest"]))).fit()
    assert resumed == first  # same run folder continued
    a, b = _losses(full), _losses(resumed)
    assert len(a) == len(b) == 6
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-6


def test_checkpoints_keep_last_and_are_complete(tmp_path, hr_dir):
    run = Trainer(VAETransferStage(tiny_cfg(tmp_path, hr_dir, ["train.max_steps=4", "train.ckpt_every=1",
                                                               "train.keep_last=2"]))).fit()
    names = [p.name for p in checkpoints(run)]
    assert names == ["checkpoint-3", "checkpoint-4"]
    assert not list((run / "checkpoints").glob("*.tmp"))  # nothing half-written left behind
    ck = run / "checkpoints" / "checkpoint-4"
    assert (ck / "model.safetensors").is_file() and json.loads((ck / "trainer_state.json").read_text())["step"] == 4
    assert (run / "config.yaml").is_file() and (run / "export" / "config.json").is_file()


class _NaNAt(VAETransferStage):
    """Reports a NaN loss on its second micro-batch only."""

    calls = 0

    def train_step(self, batch, step):
        logs = super().train_step(batch, step)
        self.calls += 1
        if self.calls == 2:
            logs["loss"] = torch.tensor(float("nan"))
        return logs


def test_nonfinite_loss_halts_or_is_skipped(tmp_path, hr_dir):
    with pytest.raises(NonFiniteLossError, match="loss"):
        Trainer(_NaNAt(tiny_cfg(tmp_path / "h", hr_dir, ["train.max_steps=3"]))).fit()
    stage = _NaNAt(tiny_cfg(tmp_path / "s", hr_dir, ["train.max_steps=3", "train.nonfinite=skip"]))
    run = Trainer(stage).fit()
    state = json.loads((checkpoints(run)[-1] / "trainer_state.json").read_text())
    assert state == {"step": 3, "nonfinite_skipped": 1}
    assert all(torch.isfinite(p).all() for p in stage.vae.parameters())


def test_unknown_config_key_is_named():
    with pytest.raises(ConfigError, match="lerning_rate"):
        load_config(VAETransferConfig, None, ["train.lerning_rate=1"])
