"""Help that reads: ``--help`` of every command imports no torch, documents every option,
shows flags as flags, prints ``A:B:T`` as typed, and lists the registries' choices."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from test_cli_usage import ENV, SCRIPT, groups, leaf_commands

HEAVY = ("torch", "numpy", "pandas", "matplotlib", "scipy")

PROBE = """
import json, sys
from serialrepro.cli import main
paths = json.loads(sys.argv[1])
seen = {}
for path in paths:
    try:
        main([*path, "--help"])
    except SystemExit as exc:
        assert exc.code in (0, None), (path, exc.code)
    seen[" ".join(path)] = [m for m in HEAVY if m in sys.modules]
print(json.dumps(seen))
""".replace("HEAVY", repr(HEAVY))


def all_paths():
    return [list(p) for p, _ in groups()] + [list(p) for p, _ in leaf_commands()]


def help_text(path) -> str:
    r = subprocess.run([SCRIPT, *path, "--help"], capture_output=True, text=True, env=ENV,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_help_of_every_command_imports_no_torch():
    r = subprocess.run([sys.executable, "-c", PROBE, json.dumps(all_paths())],
                       capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(seen) == len(all_paths())
    assert all(not mods for mods in seen.values()), seen


def test_importtime_of_the_console_script_help_has_no_torch():
    env = {**ENV, "PYTHONPROFILEIMPORTTIME": "1"}
    r = subprocess.run([SCRIPT, "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0
    assert "serialrepro.cli" in r.stderr  # the import-time profile is there
    assert not re.search(r"\|\s+torch$", r.stderr, re.M)


@pytest.mark.parametrize("path", [p for p, _ in leaf_commands()], ids=" ".join)
def test_every_option_has_help_and_flags_are_flags(path):
    cmd = dict(leaf_commands())[path]
    undocumented = [p.name for p in cmd.params if not (getattr(p, "help", None) or "").strip()]
    assert not undocumented, f"{' '.join(path)}: options without help: {undocumented}"
    text = help_text(path)
    assert "<bool>" not in text
    assert "🅱" not in text and "\x1b[" not in text  # no rich markup or colour codes
    for p in cmd.params:
        if getattr(p, "is_flag", False):
            # a flag is listed without a value placeholder
            assert re.search(rf"{re.escape(p.opts[0])}(,| ?/| {{2}}|\s*$)", text, re.M), (
                p.opts[0], text)


def test_sigmas_spec_shows_as_typed():
    assert "A:B:T" in help_text(["simulate"])


def test_one_thread_option():
    assert "--threads" in help_text([])
    for path, cmd in leaf_commands():
        assert all("--threads" not in getattr(p, "opts", ()) for p in cmd.params), path


def _option_help(path, option):
    cmd = dict(leaf_commands())[tuple(path)]
    (p,) = [p for p in cmd.params if option in getattr(p, "opts", ())]
    return p.help


def _listed(names, text):
    return [n for n in names if not re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", text)]


def test_choices_listed_match_the_registries():
    from serialrepro.data import DATASETS
    from serialrepro.grid.kernels import BACKENDS
    from serialrepro.grid.process import STEPS
    from serialrepro.models.diffusion import PREDICTION_TYPES
    from serialrepro.models.fig4 import PRESETS
    from serialrepro.models.networks import DENOISERS
    from serialrepro.models.noise import TENSOR_FAMILIES
    from serialrepro.models.schedules import RESPACINGS, SCHEDULES
    from serialrepro.models.training import sampler_names

    checks = [
        (("simulate",), "--step", STEPS), (("simulate",), "--backend", BACKENDS),
        (("simulate",), "--prior", ("swiss-roll", "three-modes", "image:PATH")),
        (("train",), "--dataset", DATASETS), (("train",), "--noise", TENSOR_FAMILIES),
        (("train",), "--schedule", SCHEDULES), (("train",), "--denoiser", DENOISERS),
        (("train",), "--prediction-type", PREDICTION_TYPES),
        (("sample",), "--sampler", sampler_names()), (("sample",), "--respace", RESPACINGS),
        (("fig4",), "--preset", PRESETS),
    ]
    for path, option, names in checks:
        missing = _listed(list(names), _option_help(path, option))
        assert not missing, f"{' '.join(path)} {option} help does not list {missing}"


def test_chains_simulate_help_lists_the_shipped_configs():
    from serialrepro.chains.simulate import shipped_names

    assert not _listed(shipped_names(), _option_help(("chains", "simulate"), "config"))


def test_sampler_auto_is_explained():
    text = _option_help(("sample",), "--sampler")
    assert re.search(r"auto \(ddpm for variance-preserving families, else x0-renoise\)", text)


def test_help_is_quick_to_import(tmp_path):
    # the import of the CLI (what --help pays) loads no module of the heavy stack
    r = subprocess.run([sys.executable, "-c", "import sys, serialrepro.cli; print(sorted("
                        f"m for m in {HEAVY!r} if m in sys.modules))"],
                       capture_output=True, text=True, env=ENV, timeout=120,
                       cwd=Path(os.getcwd()))
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
