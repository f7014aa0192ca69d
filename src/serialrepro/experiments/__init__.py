"""Experiments: the paper's figures and more, as validated configs run as resumable sweeps.

* :mod:`~serialrepro.experiments.config` — the config schema (pydantic, strict), sweep
  expansion into :class:`~serialrepro.experiments.config.Cell` objects with stable keys;
* schedule shapes, equal total noise and equal per-step standard deviation live below the
  grid layer, in :mod:`serialrepro.schedules`;
* :mod:`~serialrepro.experiments.runner` — one cell's computation and the executors
  (in-process, process pool, Dask) with a progress bar;
* :mod:`~serialrepro.store` — atomic per-cell result files (resume);
* :mod:`~serialrepro.experiments.results` — the tidy table (Parquet + CSV);
* :mod:`~serialrepro.experiments.kinds` — experiment kinds (how a config's conditions
  become cells and rows), the registry a new kind of experiment plugs into;
* :mod:`~serialrepro.experiments.verdicts` — findings, headlines and verdicts computed
  from the table (no plotting), chosen by the config's ``verdict`` and ``reference``;
* :mod:`~serialrepro.experiments.figures` and :mod:`~serialrepro.experiments.report` —
  figures (chosen by the config's ``plot``) captioned with the verdict's findings, and
  the self-contained HTML report;
* :mod:`~serialrepro.experiments.pipeline` — configs → results folder;
* ``configs/*.yaml`` — the shipped experiments (``serialrepro list``).
"""
