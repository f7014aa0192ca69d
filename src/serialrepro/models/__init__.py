"""Trained diffusion models under any noise family.

- :mod:`~serialrepro.models.schedules`: DDPM linear / cosine betas, respacing for strides.
- :mod:`~serialrepro.models.noise`: the tensor form of the noise families (VP gaussian, laplace,
  uniform, student-t; resample-uniform, blur, mask): ``degrade(x0, ᾱ, noise)``, limits.
- :mod:`~serialrepro.models.diffusion`: :class:`Diffusion` (family + schedule):
  ``add_noise``, ``step`` (DDPM), ``ddim_step``, ``reproduction_step``, ``cold_step``.
- :mod:`~serialrepro.models.reconstruct`: a network as the reconstruction of one
  reproduction step (the interface of :mod:`serialrepro.reconstruction`).
- :mod:`~serialrepro.models.samplers`: one-signature samplers returning a trajectory
  (``ddpm``, ``ddim``, ``serial`` — the paper's step —, ``reproduction``, ``cold``).
- :mod:`~serialrepro.models.networks`: time-conditioned MLP and small UNet denoisers.
- :mod:`~serialrepro.models.training`: seeded, resumable training; loading; sampling.
- :mod:`~serialrepro.models.fig4`: the paper's Figure 4 (FID vs number of steps).
"""
