"""Closed-form densities needed below the grid layer.

The paper's three-mode Gaussian mixture (docs/design.md §2) is both a data prior
(:func:`serialrepro.grid.priors.three_modes`) and the fixed target of the ``fade-fixed``
noise family, so its components are defined here, where :mod:`serialrepro.families`
can use them.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Three-mode covariance scale, W = 8·0.04² (docs/design.md §2).
THREE_MODE_W = 8 * 0.04**2


def three_mode_components(
    dims: int = 2, dtype: torch.dtype = torch.float64, device=None
) -> tuple[Tensor, Tensor, Tensor]:
    """(weights, means, covariances) of the three-mode density in ``dims`` dimensions.

    In 2-D these are the paper's: means (0.1, 0.2), (−0.2, −0.1), (0.2, −0.2) with
    covariances W·I, W·I, W·[[2, 1], [1, 2]], W = 8·0.04², equal weights (a sum of
    pdfs). In 1-D the first coordinate of each; in 3-D the 2-D modes with a third
    coordinate 0 and variance W on that axis.
    """
    w = THREE_MODE_W
    means2 = torch.tensor([[0.1, 0.2], [-0.2, -0.1], [0.2, -0.2]], dtype=torch.float64)
    covs2 = torch.tensor(
        [[[w, 0], [0, w]], [[w, 0], [0, w]], [[2 * w, w], [w, 2 * w]]], dtype=torch.float64
    )
    if dims == 2:
        means, covs = means2, covs2
    elif dims == 1:
        means, covs = means2[:, :1], covs2[:, :1, :1]
    else:
        means = torch.cat([means2, torch.zeros(3, dims - 2, dtype=torch.float64)], dim=1)
        covs = torch.zeros(3, dims, dims, dtype=torch.float64)
        covs[:, :2, :2] = covs2
        for k in range(2, dims):
            covs[:, k, k] = w
    weights = torch.full((3,), 1 / 3, dtype=torch.float64)
    return weights.to(dtype=dtype, device=device), means.to(dtype=dtype, device=device), covs.to(
        dtype=dtype, device=device
    )
