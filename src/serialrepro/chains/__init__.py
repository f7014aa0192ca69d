"""Serial reproduction itself: Bayesian agents, grid-exact chains, closed forms, and the
analysis of (human or simulated) chain data.

* :mod:`.agents`       the agent (prior, noise family, level, response rule, production noise)
* :mod:`.grid_chains`  exact distribution propagation on grids (reusing ``grid.reproduce``)
* :mod:`.closed_form`  the Gaussian AR(1) closed forms of docs/design.md §1 and their inversion
* :mod:`.data`         loading and validating long-format chain tables (composite ids,
                       stimulus seeds, filters, duplicate policies, groups and clusters)
* :mod:`.display`      multi-item displays: matching items across iterations, display statistics
* :mod:`.analysis`     the orchestrator ``analyze_chains``, calling one module per analysis:
  :mod:`.coordinates` (data ↔ unit torus, cluster bootstrap), :mod:`.convergence` (distance
  to the late iterations, dependence on the start, seed agreement, the verdict),
  :mod:`.prior` (densities in data units), :mod:`.ar1` (linear and wrapped AR(1)) and
  :mod:`.noise_fit` (maximum-likelihood σ by FFTs, with intervals and refinement)
* :mod:`.simulate`     the validated YAML config of ``chains simulate`` and the run itself
* :mod:`.report`       figures and the self-contained HTML report; :mod:`.outputs` writes
                       tables, figures and reports (atomically, :mod:`serialrepro.atomic`)
* :mod:`.cli`          ``serialrepro chains simulate`` and ``serialrepro chains analyze``

Monte-Carlo chains in continuous space live in :mod:`serialrepro.particles`.
"""

__all__ = ["RULES", "Agent"]


def __getattr__(name: str):
    # loaded on first use (PEP 562): importing serialrepro.chains.cli (for --help) must not
    # import torch
    if name in __all__:
        from serialrepro.chains import agents

        return getattr(agents, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
