"""Device names from users: torch devices or one-line errors, before any work starts."""

from __future__ import annotations

import pytest
import torch

from serialrepro.devices import resolve_device
from serialrepro.errors import UserInputError


def test_cpu_and_default():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_unknown_and_unsupported_names():
    with pytest.raises(UserInputError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    with pytest.raises(UserInputError, match="'meta' is not supported"):
        resolve_device("meta")


def test_cuda_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserInputError, match="CUDA is not available"):
        resolve_device("cuda")


def test_cuda_index_past_the_last_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(UserInputError, match="has 1 CUDA device"):
        resolve_device("cuda:3")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a CPU-only machine")
@pytest.mark.parametrize("argv", [["simulate", "--device", "cuda"],
                                  ["fig4", "--preset", "quick", "--device", "cuda"],
                                  ["train", "--run-dir", "run", "--device", "cuda"]])
def test_cli_refuses_cuda_on_a_cpu_machine(tmp_path, monkeypatch, capsys, argv):
    import sys

    from serialrepro.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["serialrepro", *argv])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "CUDA is not available" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # refused before anything was written
