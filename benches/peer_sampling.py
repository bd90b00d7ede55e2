"""NumPy ports of the engine's schedulers and guidance (src/sampling): the Python peer of
`st2v bench` (py_orchestrator.py) uses them; coefficients in float64, tensors float32."""

from __future__ import annotations

import math

import numpy as np


class PipelineError(Exception):
    """A model set or request the peer cannot run."""


# ---------------------------------------------------------------------------------------------
# Schedules (src/sampling/schedule.rs)


def alphas_cumprod(config: dict) -> np.ndarray:
    n = int(config.get("num_train_timesteps", 1000))
    kind = config.get("beta_schedule", "linear")
    start, end = float(config.get("beta_start", 0.0001)), float(config.get("beta_end", 0.02))
    if config.get("trained_betas") is not None:
        betas = np.asarray(config["trained_betas"], dtype=np.float32)
    elif kind == "scaled_linear":
        betas = np.linspace(math.sqrt(start), math.sqrt(end), n, dtype=np.float32) ** 2
    elif kind == "linear":
        betas = np.linspace(start, end, n, dtype=np.float32)
    elif kind == "squaredcos_cap_v2":
        bar = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        betas = np.array(
            [min(1 - bar((i + 1) / n) / bar(i / n), 0.999) for i in range(n)], dtype=np.float32
        )
    else:
        raise PipelineError(f"beta_schedule {kind!r} is not supported")
    return np.cumprod((np.float32(1.0) - betas).astype(np.float64)).astype(np.float32)


def spaced_timesteps(spacing: str, train: int, steps: int, offset: int, dpm: bool) -> list[int]:
    """DDIMScheduler / DPMSolverMultistepScheduler.set_timesteps, noisiest first."""
    if spacing == "leading":
        ratio = train // (steps + 1 if dpm else steps)
        first = 1 if dpm else 0
        return [i * ratio + offset for i in range(steps - 1 + first, first - 1, -1)]
    if spacing == "linspace":
        if dpm:
            points = np.round(np.linspace(0, train - 1, steps + 1)).astype(np.int64)[1:]
            return [int(t) for t in points[::-1]]
        return [int(t) for t in np.round(np.linspace(0, train - 1, steps))[::-1]]
    if spacing == "trailing":
        ratio = train / steps
        return [int(t) for t in np.round(np.arange(train, 0, -ratio)) - 1]
    raise PipelineError(f"timestep_spacing {spacing!r} is not supported")


def check_prediction(config: dict, allowed: tuple[str, ...]) -> str:
    prediction = config.get("prediction_type", "epsilon")
    if prediction not in allowed:
        raise PipelineError(f"prediction_type {prediction!r} is not supported here")
    return prediction


class Ddim:
    """DDIM with stochasticity eta (src/sampling/ddim.rs; stage 2: eta 1)."""

    def __init__(self, config: dict, steps: int, eta: float):
        self.prediction = check_prediction(config, ("epsilon", "v_prediction"))
        if config.get("thresholding", False):
            raise PipelineError("DDIM thresholding is not supported here")
        self.clip = float(config.get("clip_sample_range", 1.0)) if config.get("clip_sample", True) else None
        ac = alphas_cumprod(config)
        train = len(ac)
        self.timesteps = spaced_timesteps(
            config.get("timestep_spacing", "leading"), train, steps,
            int(config.get("steps_offset", 0)), dpm=False,
        )
        ratio = train // steps
        final = 1.0 if config.get("set_alpha_to_one", True) else float(ac[0])
        self.eta = eta
        self.coefficients = []
        for t in self.timesteps:
            a = float(ac[t])
            prev = float(ac[t - ratio]) if t - ratio >= 0 else final
            variance = (1 - prev) / (1 - a) * (1 - a / prev)
            std = eta * math.sqrt(variance)
            self.coefficients.append(
                (math.sqrt(a), math.sqrt(1 - a), math.sqrt(prev), math.sqrt(1 - prev - std * std), std)
            )

    @property
    def init_noise_sigma(self) -> float:
        return 1.0

    def needs_noise(self, index: int) -> bool:
        return self.eta > 0

    def step(self, output: np.ndarray, index: int, sample: np.ndarray, noise) -> np.ndarray:
        a, b, a_prev, direction, std = self.coefficients[index]
        if self.prediction == "epsilon":
            eps = output
            x0 = (sample - b * eps) * (1.0 / a)
        else:
            x0 = a * sample - b * output
            eps = a * output + b * sample
        if self.clip is not None:
            x0 = np.clip(x0, -self.clip, self.clip)
        prev = a_prev * x0 + direction * eps
        if noise is not None:
            prev += std * noise
        return prev


class DpmSolverPP:
    """Multistep DPM-Solver++ (ODE), orders 1-2 (src/sampling/dpm_solver_multistep.rs;
    stage 1: second order, midpoint, first order at the first and last step)."""

    def __init__(self, config: dict, steps: int):
        self.prediction = check_prediction(config, ("epsilon", "v_prediction"))
        if config.get("algorithm_type", "dpmsolver++") != "dpmsolver++":
            raise PipelineError("only algorithm_type dpmsolver++ is supported here")
        self.order = int(config.get("solver_order", 2))
        if self.order not in (1, 2):
            raise PipelineError("solver_order 3 is not supported here")
        if config.get("solver_type", "midpoint") != "midpoint":
            raise PipelineError("only solver_type midpoint is supported here")
        ac = alphas_cumprod(config)
        self.timesteps = spaced_timesteps(
            config.get("timestep_spacing", "linspace"), len(ac), steps,
            int(config.get("steps_offset", 0)), dpm=True,
        )
        sigma_of = lambda a: float(np.sqrt((np.float32(1) - a) / a))  # noqa: E731
        self.sigmas = [sigma_of(ac[t]) for t in self.timesteps]
        zero_final = config.get("final_sigmas_type", "zero") == "zero"
        self.sigmas.append(0.0 if zero_final else sigma_of(ac[0]))
        n = len(self.timesteps)
        short = bool(config.get("lower_order_final", True)) and n < 15
        euler_final = bool(config.get("euler_at_final", False))
        # diffusers' warm-up and lower_order_final rules (order 2 at most here)
        self.orders = [
            1 if self.order == 1 or i == 0
            or (i + 1 == n and (euler_final or short or zero_final)) else 2
            for i in range(n)
        ]
        self.history: list[np.ndarray] = []

    def _asl(self, index: int):
        sigma = self.sigmas[index]
        alpha = 1.0 / math.sqrt(sigma * sigma + 1.0)
        sig = sigma * alpha
        lam = math.log(alpha) - math.log(sig) if sig > 0 else math.inf
        return alpha, sig, lam

    @property
    def init_noise_sigma(self) -> float:
        return 1.0

    def needs_noise(self, index: int) -> bool:
        return False

    def step(self, output: np.ndarray, index: int, sample: np.ndarray, noise) -> np.ndarray:
        alpha_s, sigma_s, lambda_s = self._asl(index)
        if self.prediction == "epsilon":
            x0 = (sample - sigma_s * output) * (1.0 / alpha_s)
        else:
            x0 = alpha_s * sample - sigma_s * output
        if index == 0:
            self.history = []
        self.history = (self.history + [x0])[-self.order :]
        alpha_t, sigma_t, lambda_t = self._asl(index + 1)
        h = lambda_t - lambda_s
        phi = -math.expm1(-h) if math.isfinite(h) else 1.0
        sample_coef = sigma_t / sigma_s
        d0 = alpha_t * phi
        if self.orders[index] == 1:
            return sample_coef * sample + d0 * x0
        _, _, lambda_prev = self._asl(index - 1)
        r0 = (lambda_s - lambda_prev) / h
        d1 = 0.5 * alpha_t * phi
        m0, m1 = self.history[-1], self.history[-2]
        return sample_coef * sample + (d0 + d1 / r0) * m0 + (-d1 / r0) * m1


class LogSnrSchedule:
    """The enhancer's logsnr_cosine_interp schedule (src/sampling/logsnr_schedule.rs)."""

    def __init__(self, config: dict):
        if config.get("schedule", "logsnr_cosine_interp") != "logsnr_cosine_interp":
            raise PipelineError("only the logsnr_cosine_interp schedule is supported")
        n = int(config.get("num_train_timesteps", 1000))
        lmin, lmax = float(config.get("logsnr_min", -15.0)), float(config.get("logsnr_max", 15.0))
        t_min, t_max = math.atan(math.exp(-0.5 * lmin)), math.atan(math.exp(-0.5 * lmax))
        t = np.linspace(1.0, 0.0, n)
        cosine = -2.0 * np.log(np.tan(t_min + t * (t_max - t_min)))
        low = cosine + 2.0 * math.log(1.0 / float(config.get("scale_min", 2.0)))
        high = cosine + 2.0 * math.log(1.0 / float(config.get("scale_max", 4.0)))
        logsnr = t * low + (1.0 - t) * high
        sigmas = np.sqrt(1.0 / (1.0 + np.exp(logsnr)))
        if config.get("zero_terminal_snr", True) and sigmas.max() != 1.0:
            lo, hi = sigmas.min(), sigmas.max()
            sigmas = lo + (1.0 - lo) / (hi - lo) * (sigmas - lo)
        self.sigmas = sigmas
        self.alphas = np.sqrt(1.0 - sigmas * sigmas)
        with np.errstate(divide="ignore"):
            self.log_sigmas = np.log(np.sqrt(sigmas * sigmas / (1.0 - sigmas * sigmas)))

    def t_to_sigma(self, t: float) -> float:
        last = len(self.log_sigmas) - 1
        low, high = min(max(math.floor(t), 0), last), min(max(math.ceil(t), 0), last)
        w = t - math.trunc(t)
        value = (1 - w) * self.log_sigmas[low] + (w * self.log_sigmas[high] if w else 0.0)
        return math.exp(value) if math.isfinite(value) else math.inf

    def sigma_to_t(self, sigma: float) -> float:
        n = len(self.log_sigmas)
        if math.isinf(sigma):
            return float(n - 1)
        log_sigma = math.log(sigma)
        hits = np.nonzero(log_sigma - self.log_sigmas >= 0)[0]
        low = min(int(hits[-1]) if len(hits) else 0, n - 2)
        lo, hi = self.log_sigmas[low], self.log_sigmas[low + 1]
        w = min(max((lo - log_sigma) / (lo - hi), 0.0), 1.0)
        return (1 - w) * low + w * (low + 1)


class Dpmpp2mSde:
    """DPM-Solver++(2M) SDE of the enhancer (src/sampling/dpmpp_2m_sde.rs), eta 1, midpoint.
    Stateless here: the caller keeps each frame's previous x0 (the update is elementwise)."""

    def __init__(self, config: dict, steps: int):
        check_prediction(config, ("v_prediction",))
        if config.get("discretization", "trailing") != "trailing":
            raise PipelineError("only the trailing discretization is supported here")
        self.schedule = LogSnrSchedule(config)
        t_max, t_min = int(config.get("t_max", 599)), int(config.get("t_min", 0))
        discard = bool(config.get("discard_penultimate_step", True))
        self.eta = float(config.get("eta", 1.0))
        count = steps + int(discard)
        span = t_max - t_min + 1.0
        delta = -(span / count)
        length = max(math.ceil(((t_min - 1.0) - t_max) / delta), 0)
        ts = [min(max(t_max + delta * i, t_min), t_max) for i in range(length)]
        sigmas = [self.schedule.t_to_sigma(t) for t in ts] + [0.0]
        if discard and len(sigmas) >= 2:
            del sigmas[-2]
        self.sigmas = sigmas
        self.timesteps = [int(round(self.schedule.sigma_to_t(s))) for s in sigmas[:-1]]
        if len(self.timesteps) != steps:
            raise PipelineError(
                f"--enhance-steps {steps}: the enhancer's discretization gives "
                f"{len(self.timesteps)} steps (the engine refuses such counts)"
            )
        self.c_in = [1.0 / math.sqrt(s * s + 1.0) for s in sigmas[:-1]]
        self.alpha_sigma = [
            (float(self.schedule.alphas[t]), float(self.schedule.sigmas[t])) for t in self.timesteps
        ]
        self.coefficients = []
        for i in range(len(self.timesteps)):
            sigma, nxt = sigmas[i], sigmas[i + 1]
            if nxt == 0.0:
                self.coefficients.append(None)
                continue
            h = math.log(sigma) - math.log(nxt)
            eta_h = self.eta * h
            phi = -math.expm1(-h - eta_h)
            sample_coef = nxt / sigma * math.exp(-eta_h)
            noise_coef = nxt * math.sqrt(-math.expm1(-2.0 * eta_h))
            correction = 0.0
            if i > 0:
                h_last = math.log(sigmas[i - 1]) - math.log(sigma)
                correction = 0.5 * phi * h / h_last
            self.coefficients.append((sample_coef, phi + correction, -correction, noise_coef))

    @property
    def init_noise_sigma(self) -> float:
        return self.sigmas[0]

    def needs_noise(self, index: int) -> bool:
        return self.eta > 0 and self.sigmas[index + 1] > 0

    def add_noise(self, clean: np.ndarray, noise: np.ndarray, t: int) -> np.ndarray:
        alpha, sigma = float(self.schedule.alphas[t]), float(self.schedule.sigmas[t])
        return alpha * clean + sigma * noise

    def step_denoised(self, x0, index, sample, previous, noise):
        coefs = self.coefficients[index]
        if coefs is None:
            return x0.copy()
        c_sample, c_x0, c_prev, c_noise = coefs
        out = c_sample * sample + c_x0 * x0
        if previous is not None and index > 0:
            out += c_prev * previous
        if noise is not None:
            out += c_noise * noise
        return out


def build_scheduler(entry: dict, steps: int, eta: float | None = None):
    kind, config = entry["type"], entry.get("config", {})
    if kind == "ddim":
        return Ddim(config, steps, 0.0 if eta is None else eta)
    if kind == "dpmsolver_multistep":
        return DpmSolverPP(config, steps)
    if kind == "dpmpp_2m_sde":
        config = dict(config)
        if eta is not None:
            config["eta"] = eta
        return Dpmpp2mSde(config, steps)
    raise PipelineError(f"scheduler type {kind!r} is not supported")


# ---------------------------------------------------------------------------------------------
# Guidance (src/sampling/guidance.rs)


def joint_guidance(batched: np.ndarray, scale: float, rescale: float | None = None) -> np.ndarray:
    """Batch [uncond, cond] -> uncond + s (cond - uncond), optionally std-rescaled per sample."""
    half = batched.shape[0] // 2
    uncond, cond = batched[:half], batched[half:]
    guided = uncond + scale * (cond - uncond)
    if rescale is not None:
        for i in range(guided.shape[0]):
            ratio = cond[i].std(ddof=1, dtype=np.float64) / (
                guided[i].std(ddof=1, dtype=np.float64) + 1e-12
            )
            guided[i] *= rescale * ratio + (1.0 - rescale)
    return guided


def repeat_batch(sample: np.ndarray, batch: int) -> np.ndarray:
    return np.concatenate([sample] * batch, axis=0) if batch > 1 else sample


def latents_to_frames(latents: np.ndarray, scaling: float) -> np.ndarray:
    """(1, C, F, h, w) -> (F, C, h, w) / scaling, contiguous."""
    return np.ascontiguousarray(latents[0].transpose(1, 0, 2, 3)) * (1.0 / scaling)


def decoded_to_unit(images: np.ndarray) -> np.ndarray:
    return np.clip(images * 0.5 + 0.5, 0.0, 1.0)
