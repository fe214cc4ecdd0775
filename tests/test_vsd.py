import torch
from diffusers import DDPMScheduler

from tvt.losses.vsd import VSDLoss, split_patches
from tvt.testing import SD21_SCHEDULER


class _ConstEps(torch.nn.Module):
    """UNet stand-in: predicts a fixed epsilon, scaled for the unconditional half (to exercise CFG)."""

    def __init__(self, eps):
        super().__init__()
        self.eps = eps

    def forward(self, x, t, encoder_hidden_states):
        out = self.eps.expand_as(x).clone()
        cond = encoder_hidden_states[:, 0, 0].view(-1, 1, 1, 1)  # 1 for the prompt, 0 for the negative
        return type("O", (), {"sample": out * (0.5 + 0.5 * cond)})()


def test_split_is_patch_major_and_keeps_every_value():
    z = torch.arange(2 * 4 * 8 * 8, dtype=torch.float32).view(2, 4, 8, 8)
    p = split_patches(z)
    assert p.shape == (8, 4, 4, 4)
    for k, (gy, gx) in enumerate((gy, gx) for gy in range(2) for gx in range(2)):  # patch k of every sample, then k+1
        for b in range(2):
            assert torch.equal(p[k * 2 + b], z[b, :, gy * 4 : gy * 4 + 4, gx * 4 : gx * 4 + 4])


def test_generator_gradient_equals_the_official_formula_with_its_magnitude():
    """OSEDiff/TVT distribution_matching_loss, written out here: loss = mse(z, sg(z - grad)), so dL/dz = 2 grad / numel."""
    torch.manual_seed(0)
    sched = DDPMScheduler(**SD21_SCHEDULER)
    eps_fake, eps_real = torch.randn(1, 4, 1, 1), torch.randn(1, 4, 1, 1)
    vsd = VSDLoss(_ConstEps(eps_real), _ConstEps(eps_fake), sched, cfg_scale=3.0, patches=False)
    latent = torch.randn(2, 4, 8, 8, requires_grad=True)
    emb, neg = torch.ones(2, 77, 8), torch.zeros(2, 77, 8)
    torch.manual_seed(1)
    loss, _ = vsd.generator_loss(latent, emb, neg)
    loss.backward()
    # the official computation with the same timestep / noise draws
    torch.manual_seed(1)
    t = torch.randint(250, 750, (2,)).long()  # [0.25, 0.75] x 1000 timesteps
    noise = torch.randn(2, 4, 8, 8)
    a = sched.alphas_cumprod[t].view(-1, 1, 1, 1)
    noisy = a.sqrt() * latent.detach() + (1 - a).sqrt() * noise
    x0_fake = (noisy - (1 - a).sqrt() * eps_fake) / a.sqrt()
    e_unc, e_txt = 0.5 * eps_real, eps_real
    x0_real = (noisy - (1 - a).sqrt() * (e_unc + 3.0 * (e_txt - e_unc))) / a.sqrt()
    weight = (latent.detach() - x0_real).abs().mean(dim=(1, 2, 3), keepdim=True)
    grad = (x0_fake - x0_real) / weight
    torch.testing.assert_close(loss.detach(), (grad ** 2).mean(), rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(latent.grad, 2 * grad / latent.numel(), rtol=1e-4, atol=1e-7)


def test_patches_give_sd_native_size_to_the_unets():
    seen = []

    class _Rec(torch.nn.Module):
        def forward(self, x, t, encoder_hidden_states):
            seen.append((tuple(x.shape), tuple(encoder_hidden_states.shape)))
            return type("O", (), {"sample": torch.zeros_like(x)})()

    vsd = VSDLoss(_Rec(), _Rec(), DDPMScheduler(**SD21_SCHEDULER), patches=True)
    vsd.generator_loss(torch.randn(2, 4, 16, 16, requires_grad=True), torch.ones(2, 77, 8), torch.zeros(2, 77, 8))
    vsd.fake_loss(torch.randn(2, 4, 16, 16), torch.ones(2, 77, 8))
    assert seen[0] == ((8, 4, 8, 8), (8, 77, 8))  # fake: 4 patches per sample, prompts repeated
    assert seen[1] == ((16, 4, 8, 8), (16, 77, 8))  # real with CFG: negative + positive halves
    assert seen[2] == ((8, 4, 8, 8), (8, 77, 8))
