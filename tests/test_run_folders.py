"""Run folders: runs started together each get their own folder and keep it; checkpoints and exports are as
readable as the rest of the run; numeric training settings are checked before a run folder is made."""
import os
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import small_hr_folder

from tvt.config import ConfigError, load_config
from tvt.train.runs import new_run_dir
from tvt.train.train_config import TrainConfig
from tvt.train.trainer import Trainer
from tvt.train.vae_transfer import VAETransferConfig, VAETransferStage


def test_runs_started_together_get_one_folder_each():
    """40 threads ask for a folder of the same run name at once: 40 distinct folders, none refused."""
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as out:
        out, made, errors = Path(out), [], []
        barrier = threading.Barrier(40)
        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)  # switch threads as often as possible: the race shows within one try

        def start():
            barrier.wait()
            try:
                made.append(new_run_dir(out, "isr"))
            except Exception as err:  # noqa: BLE001 - what is asserted is that there is none
                errors.append(repr(err))

        try:
            threads = [threading.Thread(target=start) for _ in range(40)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            sys.setswitchinterval(interval)
        assert errors == [] and len(set(made)) == 40
        assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in made)


@dataclass
class _Cfg:
    train: TrainConfig = field(default_factory=TrainConfig)


def test_a_run_keeps_the_folder_it_made(tmp_path, monkeypatch):
    """Another run of the same name makes a newer folder right after ours: ours is still the one we use."""
    import tvt.train.trainer as trainer_module

    def new_run_dir_then_another(out, name):
        ours = new_run_dir(out, name)
        new_run_dir(out, name)  # a second run started at the same moment
        return ours

    monkeypatch.setattr(trainer_module, "new_run_dir", new_run_dir_then_another)
    trainer = Trainer(SimpleNamespace(cfg=_Cfg(TrainConfig(output_dir=str(tmp_path), run_name="isr"))))
    processes = SimpleNamespace(is_main_process=True, num_processes=1, wait_for_everyone=lambda: None)
    assert trainer._new_run_dir(processes) == tmp_path / "000-isr"
    assert (tmp_path / "000-isr" / "config.yaml").is_file() and not (tmp_path / "001-isr" / "config.yaml").exists()


@pytest.mark.parametrize("override, message", [("train.ckpt_every=0", "train.ckpt_every must be >= 1, got 0"),
                                               ("train.batch_size=0", "train.batch_size must be >= 1, got 0"),
                                               ("train.grad_accum=-1", "train.grad_accum must be >= 1, got -1")])
def test_training_ranges_are_checked_before_anything_runs(override, message, tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(VAETransferConfig, [f"train.output_dir={tmp_path}", override])
    assert message in str(err.value)
    cfg = _Cfg(TrainConfig(output_dir=str(tmp_path), ckpt_every=0))  # built in Python: checked when the run starts
    with pytest.raises(ConfigError, match="train.ckpt_every must be >= 1"):
        Trainer(SimpleNamespace(cfg=cfg, run_inputs=())).fit()
    assert list(tmp_path.iterdir()) == []


def test_checkpoints_and_exports_are_readable_by_all(tmp_path, drealsr):
    """accelerate and diffusers write their safetensors 0600; a run's files get the modes of a plain write."""
    hr = small_hr_folder(drealsr, tmp_path, 2, 32)
    cfg = load_config(VAETransferConfig, [
        "mode=scratch", "variant=d8", f"data.sources=[{hr}]", "data.crop_size=32", "loss.lpips_weight=0.0",
        "loss.disc_weight=0.0", "train.batch_size=1", "train.max_steps=1", f"train.output_dir={tmp_path / 'runs'}",
        "train.tracker=none", "vae_kwargs={block_out_channels: [8, 8, 8, 8], norm_num_groups: 4, layers_per_block: 1}"])
    run = Trainer(VAETransferStage(cfg)).fit()
    umask = os.umask(0)
    os.umask(umask)
    weights = sorted((run / "checkpoints").rglob("*.safetensors")) + sorted((run / "export").rglob("*.safetensors"))
    assert len(weights) >= 2 and {p.parent.name for p in weights} >= {"checkpoint-1", "export"}
    files = [p for p in run.rglob("*") if p.is_file()]
    assert {p.relative_to(run).as_posix(): oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {
        p.relative_to(run).as_posix(): oct(0o666 & ~umask) for p in files}
