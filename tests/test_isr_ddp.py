"""ISR training under `accelerate launch --num_processes 2 --cpu`: ranks read different samples, parameters stay
identical across ranks, logs are means over the ranks, only rank 0 writes the run folder contents (metrics,
checkpoints, export)."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image

SCRIPT = textwrap.dedent('''
    import json, sys, torch
    from tvt.config import load_config
    from tvt.train.trainer import Trainer
    from tvt.train.isr import ISRConfig, ISRStage

    class Probe(ISRStage):
        def train_step(self, batch, step):
            r = self.accelerator.process_index
            with open(f"{sys.argv[1]}/positions-{r}.jsonl", "a") as f:
                f.write(json.dumps(batch["position"].tolist()) + "\\n")
            for loss, logs in super().train_step(batch, step):
                if "l2" in logs:
                    with open(f"{sys.argv[1]}/l2-{r}.jsonl", "a") as f:
                        f.write(json.dumps(float(logs["l2"])) + "\\n")
                yield loss, logs

    cfg = load_config(ISRConfig, None, sys.argv[2:])
    stage = Probe(cfg)
    Trainer(stage).fit()
    gen = stage.accelerator.unwrap_model(stage.generator)
    flat = torch.cat([p.detach().flatten() for p in gen.parameters() if p.requires_grad])
    torch.save(flat, f"{sys.argv[1]}/params-{stage.accelerator.process_index}.pt")
''')


@pytest.mark.slow
def test_two_process_cpu_training(tmp_path, drealsr, tiny_sd, tiny_vae_d4):
    import torch

    hr = tmp_path / "hr"
    hr.mkdir()
    for p in sorted((drealsr / "HR").glob("*.png"))[:4]:
        Image.open(p).convert("RGB").resize((96, 96), Image.BICUBIC).save(hr / p.name)
    (tmp_path / "probe.py").write_text(SCRIPT)
    out = tmp_path / "runs"
    args = [f"sd_model={tiny_sd}", f"vae_d4={tiny_vae_d4}", f"data.sources=[{hr}]", "data.crop_size=64",
            "data.degradation=tiny", "loss.lpips_backbone=random", "loss.cfg_scale=2.0", "train.batch_size=1",
            "train.grad_accum=1", "train.lr=1e-3", "train.max_steps=2", "train.tracker=none", "train.ckpt_every=2",
            f"train.output_dir={out}", "train.run_name=isr", "train.num_workers=0"]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    # accelerate's own launcher runs multi-CPU jobs through mpirun only; torchrun gives the same environment
    # (RANK/WORLD_SIZE/...), and the core's Accelerator(cpu=True) then joins a gloo process group.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           str(tmp_path / "probe.py"), str(tmp_path), *args]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-4000:]
    pos = [[json.loads(line) for line in (tmp_path / f"positions-{r}.jsonl").read_text().splitlines()] for r in (0, 1)]
    assert all(set(a).isdisjoint(b) for a, b in zip(pos[0], pos[1]))  # different samples per rank at each step
    p0, p1 = torch.load(tmp_path / "params-0.pt"), torch.load(tmp_path / "params-1.pt")
    assert torch.equal(p0, p1)
    run = next(out.iterdir())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2  # one writer: rank 0
    l2 = [[json.loads(line) for line in (tmp_path / f"l2-{r}.jsonl").read_text().splitlines()] for r in (0, 1)]
    assert [r["l2"] for r in rows] == pytest.approx([(a + b) / 2 for a, b in zip(*l2)], rel=1e-5)  # both ranks' mean
    assert [c.name for c in (run / "checkpoints").iterdir()] == ["checkpoint-2"]
    assert (run / "export" / "tvt_config.json").is_file()
