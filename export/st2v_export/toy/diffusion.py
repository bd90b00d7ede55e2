"""The noise schedule, prediction target and sampler the toy UNets are trained and evaluated
with: ModelScope's (Wang et al. 2023) DDPM setup, scaled-linear betas from 0.00085 to 0.012 over
1000 steps (reference scheduler config), with one change: the toy UNets predict v (Salimans &
Ho 2022), not epsilon; the toy manifest's stage-1/2 schedulers say `v_prediction`, which the
engine's DDIM and DPM-Solver++ support as diffusers' do.

Why v: at this schedule's last timesteps alpha_bar is 0.005, so an epsilon prediction is almost
the input and its x0 is its error amplified 200 times. Trained on epsilon, the stage-1 UNet
predicted x0 at t = 990 worse than the mean latent after 2800 steps, and the caption changed no
x0 prediction (TRAINING.md); v at high t is -x0 itself.

The evaluation sampler is DDIM (Song et al. 2021) with eta 0, "leading" timesteps with
steps_offset 1 and `set_alpha_to_one=False`, as diffusers' DDIMScheduler spaces them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

TRAIN_TIMESTEPS = 1000
# float32 throughout, as diffusers computes them (the test compares with its schedulers).
BETAS = torch.linspace(0.00085**0.5, 0.012**0.5, TRAIN_TIMESTEPS, dtype=torch.float32) ** 2
ALPHAS_CUMPROD = torch.cumprod(1.0 - BETAS, dim=0)
CFG_DROPOUT = 0.1
"""Fraction of training clips whose condition is replaced by the unconditional one (the empty
prompt; for stage 2 also the zero anchor image), so classifier-free guidance works."""


def _alpha_bar(timesteps: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """alpha_bar of per-video timesteps (B,), shaped to broadcast over (B, ...) tensors."""
    return ALPHAS_CUMPROD[timesteps].view((-1,) + (1,) * (like.dim() - 1))


def add_noise(x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """q(x_t | x_0) for per-video timesteps (B,) on (B, ...) tensors."""
    alpha = _alpha_bar(timesteps, x0)
    return alpha.sqrt() * x0 + (1 - alpha).sqrt() * noise


def v_target(x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """v = sqrt(alpha_bar) * noise - sqrt(1 - alpha_bar) * x0, per video."""
    alpha = _alpha_bar(timesteps, x0)
    return alpha.sqrt() * noise - (1 - alpha).sqrt() * x0


def ddim_timesteps(steps: int) -> list[int]:
    """diffusers' "leading" spacing with steps_offset 1: 981, 961, ..., 1 for 50 steps."""
    ratio = TRAIN_TIMESTEPS // steps
    return [i * ratio + 1 for i in reversed(range(steps))]


def ddim_sample(
    predict_v: Callable[[torch.Tensor, int], torch.Tensor],
    shape: tuple[int, ...],
    generator: torch.Generator,
    steps: int = 25,
) -> torch.Tensor:
    """Deterministic DDIM from Gaussian noise; `predict_v(x_t, t)` returns v."""
    timesteps = ddim_timesteps(steps)
    sample = torch.randn(shape, generator=generator)
    for index, t in enumerate(timesteps):
        v = predict_v(sample, t)
        alpha = ALPHAS_CUMPROD[t]
        previous = ALPHAS_CUMPROD[timesteps[index + 1]] if index + 1 < steps else ALPHAS_CUMPROD[0]
        x0 = alpha.sqrt() * sample - (1 - alpha).sqrt() * v
        eps = alpha.sqrt() * v + (1 - alpha).sqrt() * sample
        sample = previous.sqrt() * x0 + (1 - previous).sqrt() * eps
    return sample


def guided(
    predict: Callable[[torch.Tensor, int], torch.Tensor], scale: float
) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """Classifier-free guidance over a batch-2 prediction [uncond, cond] of one video, as the
    engine runs it on the model output: out_u + scale * (out_c - out_u)."""

    def predict_guided(sample: torch.Tensor, t: int) -> torch.Tensor:
        uncond, cond = predict(torch.cat([sample, sample]), t).chunk(2)
        return uncond + scale * (cond - uncond)

    return predict_guided
