"""fp16 training with two optimizers and gradient accumulation, as a GPU runs it (configs/isr.yaml: generator and
fake score, clipped; the VAE stages: autoencoder and discriminator), on the CPU through accelerate's own fp16 code
(tests/amp_emulation.py). The Trainer unscales each optimizer's gradients exactly once per update, divides them by
the scale they were multiplied by, and a step with inf/NaN gradients is skipped, logged and counted."""
import json
import logging
from types import SimpleNamespace

import pytest
import torch
from amp_emulation import emulate_fp16, fresh_accelerate_state  # noqa: F401 (the fixture below)
from conftest import small_hr_folder

from tvt.config import load_config
from tvt.train.checkpoints import checkpoints
from tvt.train.trainer import Trainer
from tvt.train.vae_transfer import VAETransferConfig, VAETransferStage


pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


@pytest.fixture(scope="module")
def hr_dir(tmp_path_factory, drealsr):
    return small_hr_folder(drealsr, tmp_path_factory.mktemp("hr"), 4, 64)


def two_optimizer_stage(tmp_path, hr_dir, *overrides) -> VAETransferStage:
    """A tiny VAE with its PatchGAN discriminator from step 0: two optimizers, fp16, 2 micro-batches per step,
    gradients clipped at 1 as configs/isr.yaml clips them."""
    return VAETransferStage(load_config(VAETransferConfig, [
        "mode=scratch", "variant=d8", f"data.sources=[{hr_dir}]", "data.crop_size=32", "loss.lpips_weight=0.0",
        "loss.disc_start=0", "loss.disc_ndf=8", "train.batch_size=1", "train.grad_accum=2", "train.max_grad_norm=1.0",
        "train.mixed_precision=fp16", "train.lr=1e-3", "train.tracker=none", "train.run_name=fp16",
        f"train.output_dir={tmp_path / 'runs'}", "train.ckpt_every=1",
        "vae_kwargs={block_out_channels: [8, 8, 8, 8], norm_num_groups: 4, layers_per_block: 1}", *overrides]))


def steps(tmp_path, hr_dir, monkeypatch, n, autocast=True, **scaler):
    """``n`` optimizer steps of the real Trainer under emulated fp16 with ``GradScaler("cpu", **scaler)``: the
    trainer, its micro-batch stream, the steps' logs, each optimizer's parameters before and after, and the
    gradients each optimizer stepped with."""
    emulate_fp16(monkeypatch, autocast, **scaler)
    trainer = Trainer(two_optimizer_stage(tmp_path, hr_dir))
    batches = trainer.start()
    opts = trainer.stage.optimizers
    assert len(opts) == 2 and trainer.accelerator.scaler is not None
    params = [[p for g in o.param_groups for p in g["params"]] for o in opts]
    before = [[p.detach().clone() for p in ps] for ps in params]
    stepped = [[] for _ in opts]
    for k, opt in enumerate(opts):  # what the optimizer sees when it steps: the gradients after unscaling
        opt.optimizer.register_step_pre_hook(
            lambda o, a, kw, k=k: stepped[k].append([p.grad.clone() for p in params[k] if p.grad is not None]))
    results = [trainer.optimizer_step(batches) for _ in range(n)]
    after = [[p.detach().clone() for p in ps] for ps in params]
    return SimpleNamespace(trainer=trainer, batches=batches, results=results, before=before, after=after,
                           stepped=stepped)


def _rel(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    a, b = torch.cat([t.flatten() for t in a]), torch.cat([t.flatten() for t in b])
    return float((a - b).norm() / b.norm())


def test_fp16_two_optimizers_accumulated_update_as_without_scaling(tmp_path, hr_dir, monkeypatch):
    """Two steps of 2 micro-batches each, the scale doubling after every update (growth_interval=1): no crash
    (the old loop raised "unscale_() has already been called" at the second optimizer's clip), and each
    optimizer's gradients and update equal those of the same run without loss scaling (relative 1e-6).
    The models compute in float32 here (fp16 without its autocast): float16 gradients without scaling underflow,
    which is why loss scaling exists, so they would be no exact reference; scaling by powers of two is exact in
    float32. The dry runs (test_paper_configs.py) train with the float16 autocast too."""
    scaled = steps(tmp_path / "scaled", hr_dir, monkeypatch, 2, False, init_scale=2.0 ** 10, growth_interval=1)
    plain = steps(tmp_path / "plain", hr_dir, monkeypatch, 2, False, enabled=False)
    assert all(r is not None for r in scaled.results + plain.results)  # every update taken
    assert scaled.trainer.accelerator.scaler.get_scale() == 2.0 ** 12  # one scaler update per step, not per optimizer
    assert [r["loss_scale"] for r in scaled.results] == [2.0 ** 10, 2.0 ** 11]
    for k in range(2):
        assert len(scaled.stepped[k]) == len(plain.stepped[k]) == 2  # each optimizer steps once per optimizer step
        for gs, gp in zip(scaled.stepped[k], plain.stepped[k]):
            assert _rel(gs, gp) < 1e-6
        update_scaled = [a - b for a, b in zip(scaled.after[k], scaled.before[k])]
        update_plain = [a - b for a, b in zip(plain.after[k], plain.before[k])]
        assert torch.cat([u.flatten() for u in update_plain]).abs().max() > 0
        assert _rel(update_scaled, update_plain) < 1e-6


def test_fp16_inf_gradients_skip_the_step_and_say_so(tmp_path, hr_dir, monkeypatch, caplog):
    """A scale so large that the scaled gradients overflow float16: the scaler finds inf, the step is skipped (the
    weights unchanged), a warning says so and the skip is counted; the scale backs off and the next step trains."""
    caplog.set_level(logging.WARNING, logger="tvt.train")
    run = steps(tmp_path, hr_dir, monkeypatch, 1, init_scale=2.0 ** 40, backoff_factor=2.0 ** -38)
    trainer = run.trainer
    assert run.results == [None] and run.stepped == [[], []]
    assert all(torch.equal(a, b) for k in range(2) for a, b in zip(run.after[k], run.before[k]))
    assert (trainer.step, trainer.skipped, trainer.scaler_skipped) == (0, 0, 1)
    assert "inf/NaN gradients" in caplog.text and "loss scale" in caplog.text and "skipped" in caplog.text
    assert trainer.accelerator.scaler.get_scale() == 4.0  # backed off
    assert trainer.optimizer_step(run.batches) is not None
    assert all(torch.isfinite(p).all() for o in trainer.stage.optimizers for g in o.param_groups for p in g["params"])


def test_fp16_skipped_steps_are_recorded_and_resumed(tmp_path, hr_dir, monkeypatch):
    """fit() with one step the scaler skips: it still trains max_steps updates, and the checkpoint records the skip
    (the resumed data stream starts after the skipped step's micro-batches) and the scaler's state."""
    emulate_fp16(monkeypatch, init_scale=2.0 ** 40, backoff_factor=2.0 ** -38)
    run = Trainer(two_optimizer_stage(tmp_path, hr_dir, "train.max_steps=1", "train.export=false")).fit()
    (ckpt,) = checkpoints(run)
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert (state["step"], state["nonfinite_skipped"], state["scaler_skipped"]) == (1, 0, 1)
    assert "scaler.pt" in state["files"]


def test_the_release_order_with_accelerates_helpers_steps_the_fake_score_on_its_last_micro_batch(monkeypatch):
    """Why the Trainer does not use accelerate's clip and step as the release does (TVT train.py:168-227): under
    fp16 with 2 micro-batches, the generator's clip_grad_norm_ unscales every optimizer, the fake score's
    accumulated first micro-batch included, and the generator's step updates the scaler; the fake score's clip
    then unscales it again. Its step sees the first micro-batch's gradient divided by the scale once more: in
    effect the last micro-batch's gradient alone (docs/fidelity.md, "fp16 loss scaling with accumulation")."""
    from accelerate.accelerator import Accelerator

    acc = Accelerator(cpu=True, gradient_accumulation_steps=2)
    acc.state._mixed_precision, acc.native_amp = "fp16", True  # as tests/amp_emulation.py, inline
    acc.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    torch.manual_seed(0)
    gen, fake = torch.nn.Linear(4, 4), torch.nn.Linear(4, 1)
    gen, fake, opt, opt_fake = acc.prepare(gen, fake, torch.optim.SGD(gen.parameters(), lr=0.0),
                                           torch.optim.SGD(fake.parameters(), lr=0.0))
    stepped = []
    opt_fake.optimizer.register_step_pre_hook(lambda o, a, kw: stepped.append(fake.weight.grad.clone()))
    per_batch = []
    for x in (torch.randn(2, 4), torch.randn(2, 4)):
        with acc.accumulate(gen, fake):
            latent = gen(x)
            acc.backward(latent.pow(2).mean())  # train.py:210-214
            if acc.sync_gradients:
                acc.clip_grad_norm_(list(gen.parameters()), 1.0)
            opt.step()
            opt.zero_grad()
            w = fake.weight.detach().clone().requires_grad_()  # this micro-batch's own gradient, as accumulated
            (torch.nn.functional.linear(latent.detach(), w, fake.bias.detach()).pow(2).mean() / 2).backward()
            per_batch.append(w.grad)
            acc.backward(fake(latent.detach()).pow(2).mean())  # train.py:224-228
            if acc.sync_gradients:
                acc.clip_grad_norm_(list(fake.parameters()), 1.0)
            opt_fake.step()
            opt_fake.zero_grad()
    (used,) = stepped
    assert _rel([used], [per_batch[1]]) < 1e-2 and _rel([used], [per_batch[0] + per_batch[1]]) > 0.3  # fp16 forward
