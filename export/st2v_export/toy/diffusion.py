"""The noise schedule, prediction target and sampler the toy UNets are trained and evaluated
with: ModelScope's (Wang et al. 2023) DDPM setup, scaled-linear betas from 0.00085 to 0.012 over
1000 steps (reference scheduler config), with two changes the toy manifest's stage-1/2
schedulers declare to the engine (`TOY_SCHEDULER_CONFIG`), both as diffusers implements them:
the toy UNets predict v (Salimans & Ho 2022), not epsilon, and the betas are rescaled to a zero
terminal SNR (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed";
diffusers' `rescale_betas_zero_snr`).

Why v: at ModelScope's last timesteps alpha_bar is 0.005, so an epsilon prediction is almost
the input and its x0 is its error amplified 200 times. Trained on epsilon, the stage-1 UNet
predicted x0 at t = 990 worse than the mean latent after 2800 steps, and the caption changed no
x0 prediction (TRAINING.md); v at high t is -x0 itself.

Why zero terminal SNR: ModelScope's last alpha_bar, 0.005, leaves 7 % of the clean latents in
x_999. The toy clips are mostly a constant background over 16 frames of 8x8 latents, so the mean
of x_999 tells the background (its noise averages out over 1024 values per channel): trained on
that schedule, the stage-1 UNet predicted x0 at t = 999 with an error of 0.48 from the empty
prompt (the per-channel variance is 1.14), and from pure noise, as sampling starts, 1.09 with the
true caption: it had learnt to read the leak, not the caption (TRAINING.md). With alpha_bar(999)
= 0, x_999 is pure noise in training too, and only the caption can tell the background.

The evaluation sampler is DDIM (Song et al. 2021) with eta 0 and "trailing" timesteps (999, 959,
..., 39 for 25 steps; Lin et al. 2024 Sec. 3.3: sampling must start at the last timestep) and
`set_alpha_to_one=False`, as diffusers' DDIMScheduler spaces them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

TRAIN_TIMESTEPS = 1000
TOY_SCHEDULER_CONFIG = {"prediction_type": "v_prediction", "rescale_betas_zero_snr": True}
"""What the toy stage-1/2 schedulers change in ModelScope's config (`export.py` writes it)."""
TOY_GUIDANCE_SCALE = 3.0
"""The toy manifest's stage-1 and stage-2 guidance (ModelScope's 9 and StreamingT2V's 7.5 are
the reference's): at a zero terminal SNR the high scales pushed backgrounds and colours off the
caption; 3 did best on held-out captions (TRAINING.md, "Zero terminal SNR")."""


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Lin et al. 2024, Algorithm 1: shift sqrt(alpha_bar) so its last value is 0 and scale it so
    its first is unchanged; the betas of that alpha_bar."""
    root = torch.cumprod(1.0 - betas, dim=0).sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * (first / (first - last))
    alphas_bar = root**2
    alphas = torch.cat([alphas_bar[:1], alphas_bar[1:] / alphas_bar[:-1]])
    return 1 - alphas


# float32 throughout, as diffusers computes them (the test compares with its schedulers).
BETAS = rescale_zero_terminal_snr(
    torch.linspace(0.00085**0.5, 0.012**0.5, TRAIN_TIMESTEPS, dtype=torch.float32) ** 2
)
ALPHAS_CUMPROD = torch.cumprod(1.0 - BETAS, dim=0)
CFG_DROPOUT = 0.1
"""Fraction of training clips whose condition is replaced by the unconditional one (the empty
prompt; for stage 2 also the zero anchor image), so classifier-free guidance works."""


def _alpha_bar(timesteps: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """alpha_bar of per-video timesteps (B,), shaped to broadcast over (B, ...) tensors."""
    return ALPHAS_CUMPROD.to(like.device)[timesteps].view((-1,) + (1,) * (like.dim() - 1))


def add_noise(x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """q(x_t | x_0) for per-video timesteps (B,) on (B, ...) tensors."""
    alpha = _alpha_bar(timesteps, x0)
    return alpha.sqrt() * x0 + (1 - alpha).sqrt() * noise


def v_target(x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """v = sqrt(alpha_bar) * noise - sqrt(1 - alpha_bar) * x0, per video."""
    alpha = _alpha_bar(timesteps, x0)
    return alpha.sqrt() * noise - (1 - alpha).sqrt() * x0


def ddim_timesteps(steps: int) -> list[int]:
    """diffusers' "trailing" spacing: 999, 979, ..., 19 for 50 steps."""
    ratio = TRAIN_TIMESTEPS / steps
    return [round(TRAIN_TIMESTEPS - i * ratio) - 1 for i in range(steps)]


def ddim_sample(
    predict_v: Callable[[torch.Tensor, int], torch.Tensor],
    shape: tuple[int, ...],
    generator: torch.Generator,
    steps: int = 25,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Deterministic DDIM from Gaussian noise (drawn on the CPU, then moved to `device`);
    `predict_v(x_t, t)` returns v."""
    timesteps = ddim_timesteps(steps)
    sample = torch.randn(shape, generator=generator).to(device)
    for t in timesteps:
        v = predict_v(sample, t)
        alpha = ALPHAS_CUMPROD[t]
        # diffusers' previous timestep is t - 1000 // steps, also where "trailing" skips one.
        previous_t = t - TRAIN_TIMESTEPS // steps
        previous = ALPHAS_CUMPROD[previous_t] if previous_t >= 0 else ALPHAS_CUMPROD[0]
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


# --------------------------------------------------------------------------- stage 3 (enhancer)
# MS-Vid2Vid-XL's schedule (modelscope `schedules_sdedit.noise_schedule('logsnr_cosine_interp',
# n=1000, zero_terminal_snr=True, scale_min=2.0, scale_max=4.0)`): the log-SNR of a cosine
# schedule shifted by 2 log(1/scale), interpolated from scale 2 at t = 0 to scale 4 at t = 999,
# then stretched so that sigma(999) = 1. The enhancer predicts v = alpha * noise - sigma * x0.

STAGE3_NOISE_TIMESTEP = 599
"""Where the engine's SDEdit starts (`pipeline.stage3.noise_timestep`)."""
TOY_STAGE3_GUIDANCE = 3.0
"""The toy manifest's stage-3 guidance (MS-Vid2Vid-XL's is 7.5): TRAINING.md, "The enhancer"."""
TOY_STAGE3_NOISE_TIMESTEP = 300
"""The toy manifest's SDEdit start (and its DPM++ `t_max`): at the reference's 599 (alpha 0.23)
the toy enhancer redraws too much of a draft; at 300 (alpha 0.62) it keeps more of the colours,
positions and shapes (TRAINING.md, "The enhancer"). Training covers every t up to 599."""


def _logsnr_cosine_shifted(t: torch.Tensor, scale: float, logsnr_min=-15.0, logsnr_max=15.0):
    t_min = math.atan(math.exp(-0.5 * logsnr_min))
    t_max = math.atan(math.exp(-0.5 * logsnr_max))
    return -2 * torch.log(torch.tan(t_min + t * (t_max - t_min))) + 2 * math.log(1 / scale)


def stage3_sigmas(n: int = TRAIN_TIMESTEPS, scale_min: float = 2.0, scale_max: float = 4.0):
    """sigma_t (the VP noise std) of the enhancer's schedule, t = 0 .. n - 1, float32."""
    t = torch.linspace(1, 0, n)
    logsnrs = t * _logsnr_cosine_shifted(t, scale_min) + (1 - t) * _logsnr_cosine_shifted(
        t, scale_max
    )
    sigmas = torch.sqrt(torch.sigmoid(-logsnrs))
    if sigmas.max() != 1.0:  # zero terminal SNR
        scale = (1.0 - sigmas.min()) / (sigmas.max() - sigmas.min())
        sigmas = sigmas.min() + scale * (sigmas - sigmas.min())
    return sigmas


STAGE3_SIGMAS = stage3_sigmas()
STAGE3_ALPHAS = torch.sqrt(1 - STAGE3_SIGMAS**2)


def _stage3_coefficients(timesteps: torch.Tensor, like: torch.Tensor):
    shape = (-1,) + (1,) * (like.dim() - 1)
    alphas, sigmas = STAGE3_ALPHAS.to(like.device), STAGE3_SIGMAS.to(like.device)
    return alphas[timesteps].view(shape), sigmas[timesteps].view(shape)


def stage3_noised(x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor):
    """(x_t, v target) of the enhancer's schedule for per-video timesteps (B,)."""
    alpha, sigma = _stage3_coefficients(timesteps, x0)
    return alpha * x0 + sigma * noise, alpha * noise - sigma * x0


def stage3_restoration(x0: torch.Tensor, draft: torch.Tensor, noise: torch.Tensor,
                       timesteps: torch.Tensor):
    """(x_t, v target) for SDEdit on a draft: x_t noises `draft`, and the target is the v whose
    implied x0 (alpha x_t - sigma v) is the clean `x0`. It is `stage3_noised`'s v plus
    alpha^2 (draft - x0) / sigma, so a draft equal to x0 gives exactly that target; the term
    grows as sigma falls, so restoration is trained only well away from t = 0."""
    alpha, sigma = _stage3_coefficients(timesteps, x0)
    noisy = alpha * draft + sigma * noise
    return noisy, alpha * noise - sigma * x0 + alpha**2 * (draft - x0) / sigma


def rescaled_guidance(uncond: torch.Tensor, cond: torch.Tensor, scale: float, rescale: float):
    """The enhancer's guidance (`diffusion_sdedit.denoise`): u + scale (c - u), its std pulled
    towards the conditional output's by `rescale` (std over each sample's elements)."""
    out = uncond + scale * (cond - uncond)
    dims = tuple(range(1, out.dim()))
    ratio = cond.std(dim=dims, keepdim=True) / out.std(dim=dims, keepdim=True)
    return out * (rescale * ratio + 1 - rescale)


def stage3_sdedit(
    predict_v: Callable[[torch.Tensor, int], torch.Tensor],
    x0: torch.Tensor,
    generator: torch.Generator,
    steps: int = 10,
    start: int = STAGE3_NOISE_TIMESTEP,
) -> torch.Tensor:
    """SDEdit (Meng et al. 2022) as the enhancer runs it: noise `x0` to `start`, then denoise it
    with deterministic DDIM steps on the stage-3 schedule (the engine uses DPM++ 2M SDE; this is
    the training-time stand-in). Returns the clean latents."""
    timesteps = torch.linspace(start, 0, steps + 1).round().long().tolist()
    noise = torch.randn(x0.shape, generator=generator).to(x0.device)
    sample = STAGE3_ALPHAS[start] * x0 + STAGE3_SIGMAS[start] * noise
    for t, t_next in zip(timesteps[:-1], timesteps[1:]):
        alpha, sigma = STAGE3_ALPHAS[t], STAGE3_SIGMAS[t]
        v = predict_v(sample, t)
        x0_hat = alpha * sample - sigma * v
        eps = sigma * sample + alpha * v
        sample = STAGE3_ALPHAS[t_next] * x0_hat + STAGE3_SIGMAS[t_next] * eps
    return x0_hat  # the last prediction, at t = timesteps[-2] (the next is t = 0)
