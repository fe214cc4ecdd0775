"""Stopping a command: SIGTERM is handled as Ctrl-C is (a message; in training, a final checkpoint once there is
one, else the run folder removed), and a Ctrl-C while a command is still importing is one line, not a traceback."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import small_hr_folder

from tvt.config import load_config
from tvt.signals import Terminated
from tvt.train.checkpoints import checkpoints
from tvt.train.trainer import Trainer
from tvt.train.vae_transfer import VAETransferConfig, VAETransferStage

ROOT = Path(__file__).resolve().parents[1]
TINY = ["mode=scratch", "variant=d8", "data.crop_size=32", "loss.lpips_weight=0.0", "loss.disc_weight=0.0",
        "train.batch_size=1", "train.log_every=1", "train.tracker=none", "train.run_name=t",
        "vae_kwargs={block_out_channels: [8, 8, 8, 8], norm_num_groups: 4, layers_per_block: 1}"]


@pytest.fixture(scope="module")
def hr_dir(tmp_path_factory, drealsr):
    return small_hr_folder(drealsr, tmp_path_factory.mktemp("hr"), 2, 32)


class _SigtermDuringStep5(VAETransferStage):
    """The process gets SIGTERM while optimizer step 5 runs (as from a scheduler)."""

    def train_step(self, batch, step):
        if step == 4:
            os.kill(os.getpid(), signal.SIGTERM)
        return super().train_step(batch, step)


def _fit(tmp_path, hr_dir, *overrides):
    cfg = load_config(VAETransferConfig, TINY + [f"data.sources=[{hr_dir}]", f"train.output_dir={tmp_path / 'runs'}",
                                                 *overrides])
    return Trainer(_SigtermDuringStep5(cfg)).fit()


def test_sigterm_after_a_checkpoint_saves_a_final_one_and_says_how_to_resume(tmp_path, hr_dir, caplog):
    with pytest.raises(Terminated):
        _fit(tmp_path, hr_dir, "train.max_steps=20", "train.ckpt_every=3")
    (run,) = (tmp_path / "runs").iterdir()
    assert [c.name for c in checkpoints(run)] == ["checkpoint-3", "checkpoint-5"]  # step 5 finished, then saved
    assert json.loads((checkpoints(run)[-1] / "trainer_state.json").read_text())["step"] == 5
    assert f"stopped at step 5; train.resume={run} continues from checkpoint-5" in caplog.text
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone with the run


def test_sigterm_before_the_first_checkpoint_removes_the_run_folder(tmp_path, hr_dir, caplog):
    with pytest.raises(Terminated):
        _fit(tmp_path, hr_dir, "train.max_steps=20", "train.ckpt_every=100")
    assert list((tmp_path / "runs").iterdir()) == []
    assert "the run stopped before its first checkpoint" in caplog.text


def test_sigterm_at_the_command_boundary_is_one_line(tmp_path, monkeypatch, capsys):
    import tvt_scripts.train_isr as isr

    monkeypatch.setattr(Trainer, "fit", lambda self: os.kill(os.getpid(), signal.SIGTERM))
    assert isr.main([f"train.output_dir={tmp_path}"]) == 143
    assert capsys.readouterr().err == "terminated (SIGTERM)\n"


def _command(tmp_path, hr_dir, *overrides):
    """The ablation training command in a subprocess, on the tiny VAE."""
    args = [sys.executable, "-m", "tvt_scripts.train_vae_ablation", *TINY, f"data.sources=[{hr_dir}]",
            f"train.output_dir={tmp_path / 'runs'}", "train.max_steps=100000", *overrides]
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def _wait_for(condition, proc, timeout=120):
    start = time.monotonic()
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - start < timeout
        time.sleep(0.05)


@pytest.mark.slow
def test_sigterm_sent_to_a_training_command(tmp_path, hr_dir):
    """A scheduler's SIGTERM to a running `tvt-train-vae-ablation`: exit 143 with the message and, after the first
    checkpoint, a final one; before it, no run folder left."""
    proc = _command(tmp_path / "a", hr_dir, "train.ckpt_every=2")
    _wait_for(lambda: any((tmp_path / "a" / "runs").glob("*/checkpoints/checkpoint-2")), proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    (run,) = (tmp_path / "a" / "runs").iterdir()
    last = checkpoints(run)[-1]
    assert proc.returncode == 143 and err.strip().endswith("terminated (SIGTERM)") and "Traceback" not in err
    assert f"continues from {last.name}" in err and json.loads((last / "trainer_state.json").read_text())["step"] >= 2

    proc = _command(tmp_path / "b", hr_dir, "train.ckpt_every=100000")
    _wait_for(lambda: any((tmp_path / "b" / "runs").glob("*/metrics.jsonl")), proc)  # training, no checkpoint yet
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "before its first checkpoint" in err and "Traceback" not in err
    assert list((tmp_path / "b" / "runs").iterdir()) == []


def _interrupted_import(tmp_path, args):
    """Run a command whose imports meet a Ctrl-C: a stand-in for torch (imported by every command after
    tvt_scripts, before any work) raises KeyboardInterrupt when imported."""
    (tmp_path / "torch.py").write_text("raise KeyboardInterrupt\n")
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(tmp_path)})


@pytest.mark.parametrize("args", [["scripts/infer.py", "--help"], ["-m", "tvt_scripts.train_isr"]],
                         ids=["file", "module"])
def test_ctrl_c_while_importing_is_one_line(args, tmp_path):
    done = _interrupted_import(tmp_path, args)
    assert done.stderr == "interrupted (Ctrl-C)\n" and done.returncode in (130, -signal.SIGINT)


def test_every_command_imports_tvt_scripts_first():
    """What makes the test above hold for every command: its first import is the package."""
    for path in sorted((ROOT / "scripts").glob("*.py")):
        text = path.read_text()
        if path.name.startswith("_") or "\ndef main(" not in text:
            continue
        imports = [line for line in text.splitlines() if line.startswith(("import ", "from "))]
        assert imports[0].startswith("import tvt_scripts "), path.name


@pytest.mark.slow
def test_ctrl_c_while_importing_any_command(tmp_path):
    for path in sorted((ROOT / "scripts").glob("*.py")):
        if not path.name.startswith("_") and "\ndef main(" in path.read_text():
            done = _interrupted_import(tmp_path, [str(path.relative_to(ROOT)), "--help"])
            assert done.stderr == "interrupted (Ctrl-C)\n", (path.name, done.stderr)
