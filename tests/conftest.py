"""Shared pytest fixtures (keep small; each subsystem's tests may add theirs)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread():
    """Run every test with one intra-op torch thread, restoring the setting afterwards
    (the CLI does the same by default: see ``serialrepro --threads``).

    The grid engine's tensors are small; on a shared 2-core machine, intra-op threads
    contending with other processes slow such tests 10-100× (measured)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
