"""Trained diffusion models under any noise family.

- :mod:`~serialrepro.models.schedules`: DDPM linear / cosine betas, respacing for strides.
- :mod:`~serialrepro.models.noise`: the tensor form of the noise families (VP gaussian, laplace,
  uniform, student-t; resample-uniform, blur, mask): ``degrade(x0, ᾱ, noise)``, limits.
- :mod:`~serialrepro.models.diffusion`: :class:`Diffusion` (family + schedule), called as
  diffusers' ``DDPMScheduler`` (``add_noise``, ``set_timesteps``, ``step``), and
  :class:`DDIMDiffusion` as ``DDIMScheduler``; ``ddpm_step``, ``ddim_step``,
  ``reproduction_step``, ``cold_step`` for the samplers.
- :mod:`~serialrepro.models.reconstruct`: a network as the reconstruction of one
  reproduction step (the interface of :mod:`serialrepro.reconstruction`).
- :mod:`~serialrepro.models.samplers`: one-signature samplers returning a trajectory
  (``ddpm``, ``ddim``, ``serial`` — the paper's step —, ``reproduction``, ``cold``).
- :mod:`~serialrepro.models.networks`: time-conditioned MLP and small UNet denoisers.
- :mod:`~serialrepro.models.training`: seeded, resumable training; loading; sampling.
- :mod:`~serialrepro.models.external`: a saved diffusers ``UNet2DModel`` wrapped as our
  denoiser and process, so every sampler and stride runs on someone's own model.
- :mod:`~serialrepro.models.fig4`: the paper's Figure 4 (FID vs number of steps).
"""

__all__ = ["DDIMDiffusion", "Diffusion", "SchedulerOutput"]


def __getattr__(name: str):
    # on first use, so that `serialrepro --help` (which imports models.cli) loads no torch
    if name in __all__:
        from serialrepro.models import diffusion

        return getattr(diffusion, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
