"""Property-based fuzzing of experiment configs: random mutations of the shipped configs
either validate and expand, or raise a one-line UserInputError; never another exception.

Derandomised (the same examples every run), so a failure reproduces; hypothesis prints
the mutation that broke it.
"""

from __future__ import annotations

import copy

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serialrepro import budget
from serialrepro.configio import parse_yaml, read_yaml
from serialrepro.errors import UserInputError
from serialrepro.experiments.catalog import config_dir, shipped_names
from serialrepro.experiments.config import expand, parse_config

SHIPPED = {name: read_yaml(config_dir() / f"{name}.yaml") for name in shipped_names()}

WORDS = ["gaussian", "laplace", "fade-uniform", "bimodal", "swiss-roll", "three-modes",
         "serial", "ancestral", "linear", "geometric", "cosine", "constant", "paper:0.04",
         "paper:1e-9", "paper:0", "paper:nan", "torus:8", "torus:1", "torus:100000",
         "torus:-3", "image:/nonexistent.png", "image:", "process", "dense", "fft", "auto",
         "x" * 5000, "", "T", "start", "end", "num", "step", "value", "total_variance"]

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-3, max_value=200),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 1e-300, 1e-162, 0.01, 0.05, 0.5, 1.0, 1.5, 1e300]),
    st.sampled_from(WORDS), st.text(max_size=20),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(WORDS[:35]) | st.text(max_size=8),
                                            inner, max_size=4)),
    max_leaves=12,
)


def _paths(node, prefix=()):
    """Every location in the tree (to replace or delete)."""
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


def _mutate(doc, path, op, value, key):
    if not path:
        return value if op == "replace" else doc
    parent = doc
    for p in path[:-1]:
        parent = parent[p]
    last = path[-1]
    if op == "replace":
        parent[last] = value
    elif op == "delete":
        del parent[last]
    elif op == "add" and isinstance(parent, dict):
        parent[key] = value
    elif op == "add" and isinstance(parent, list):
        parent.append(value)
    elif op == "duplicate" and isinstance(parent, list):
        parent.append(copy.deepcopy(parent[last]))
    return doc


@st.composite
def mutated_configs(draw):
    doc = copy.deepcopy(SHIPPED[draw(st.sampled_from(sorted(SHIPPED)))])
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = list(_paths(doc))
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["replace", "replace", "delete", "add", "duplicate"]))
        doc = _mutate(doc, path, op, draw(values), draw(st.sampled_from(WORDS[:35])))
    return doc


def _validate(doc) -> None:
    try:
        cells = expand(parse_config(doc, "fuzz.yaml"))
        assert cells
    except UserInputError as exc:
        msg = str(exc)
        assert "\n" not in msg and len(msg) < 3000, msg


@pytest.fixture(autouse=True)
def small_budget(monkeypatch):
    # a huge but valid mutation must be refused by arithmetic, not attempted
    monkeypatch.setenv(budget.MEMORY_LIMIT_ENV, "512M")


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(mutated_configs())
def test_mutated_shipped_configs_validate_or_fail_in_one_line(doc):
    _validate(doc)


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(mutated_configs())
def test_mutations_survive_the_yaml_round_trip(doc):
    try:
        text = yaml.safe_dump(doc, allow_unicode=True)
    except (yaml.YAMLError, ValueError, OverflowError):
        return
    try:
        data = parse_yaml(text, "fuzz.yaml")
    except UserInputError:
        return
    _validate(data)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_config_still_validates(name):
    assert expand(parse_config(SHIPPED[name], name))
