"""Reading config files from users (untrusted): bounded YAML, one-line validation errors.

:func:`read_yaml` parses with PyYAML's safe loader (no ``!!python`` tags) and refuses,
before anything is built from the file, what would make parsing or validation itself
the attack:

* files larger than :data:`MAX_YAML_BYTES`;
* nesting deeper than :data:`MAX_DEPTH` (the composer recurses once per level);
* documents whose aliases expand to more than :data:`MAX_EXPANDED_NODES` nodes (an
  "alias bomb": nine anchors of nine references each is 9⁹ nodes from 500 bytes; PyYAML
  shares the objects, but validators and error messages walk them as a tree), and
  recursive aliases (``&a [*a]``);
* integers with more than :data:`MAX_INT_DIGITS` digits (converting them is quadratic).

The expanded size is counted on the composed node graph, each shared node once with
its size memoised, so the check costs time linear in the file, not in its expansion.

:class:`StrictModel` is the base of every config schema, and
:func:`format_validation_error` turns a pydantic ``ValidationError`` into one line
with key paths, echoing input values only through :func:`short_repr` (truncated).
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from serialrepro.errors import UserInputError

#: largest config file read (the shipped configs are under 4 KB)
MAX_YAML_BYTES = 1 << 20
#: deepest nesting of mappings and lists
MAX_DEPTH = 64
#: most nodes the document may have once every alias is expanded
MAX_EXPANDED_NODES = 100_000
#: most digits of an integer (seeds and sizes need at most 20)
MAX_INT_DIGITS = 100
#: longest echo of a user's value in an error message
MAX_ECHO = 80


class StrictModel(BaseModel):
    """Base of the config schemas: unknown keys are errors, values are not coerced between
    types (``"3"`` is no number), NaN and ±inf are no number of a config (a NaN start would
    silently become a grid point), and a validated config is immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class _Refused(yaml.YAMLError):
    """A bound of this module was exceeded (reported as its message)."""


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses deep nesting and huge integers while composing."""

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"nesting is deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_yaml_int(self, node):
        text = str(node.value)
        if sum(ch.isdigit() for ch in text) > MAX_INT_DIGITS:
            raise _Refused(f"an integer on line {node.start_mark.line + 1} has more than "
                           f"{MAX_INT_DIGITS} digits")
        return super().construct_yaml_int(node)


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """Nodes of the tree that ``root`` expands to (aliases copied out), counting each
    distinct node once (memoised); stops early above ``limit``. Refuses cycles."""
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            total = 1 + sum(size[id(c)] for c in _children(node))
            size[key] = min(total, limit + 1)
            continue
        if key in size:
            continue
        if key in on_path:
            raise _Refused("a recursive alias (an anchor used inside itself)")
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                raise _Refused("a recursive alias (an anchor used inside itself)")
            if id(child) not in size:
                stack.append((child, False))
    return size[id(root)]


def _children(node: yaml.Node) -> Iterable[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return ()


def parse_yaml(text: str, source: str = "<text>") -> Any:
    """Parse YAML text with the bounds of this module (see the module docstring)."""
    if len(text) > MAX_YAML_BYTES:
        raise UserInputError(f"config {source} is {len(text)} characters; the limit is "
                             f"{MAX_YAML_BYTES}")
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        n = _expanded_size(node, MAX_EXPANDED_NODES)
        if n > MAX_EXPANDED_NODES:
            raise _Refused(f"its aliases expand to more than {MAX_EXPANDED_NODES} nodes")
        return loader.construct_document(node)
    except _Refused as exc:
        raise UserInputError(f"config {source} is refused: {exc}") from None
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserInputError(f"config {source} is not valid YAML: {first[:200]}") from None
    finally:
        loader.dispose()


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file with the bounds of :func:`parse_yaml`; a missing, unreadable,
    oversized or non-UTF-8 file, or bad YAML, is a one-line :class:`UserInputError`."""
    path = Path(path)
    source = repr(str(path))
    if not path.is_file():
        raise UserInputError(f"config file {source} does not exist")
    try:
        size = path.stat().st_size
        if size > MAX_YAML_BYTES:
            raise UserInputError(f"config file {source} is {size} bytes; the limit is "
                                 f"{MAX_YAML_BYTES} (configs are small text files)")
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise UserInputError(f"config file {source} cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UserInputError(f"config file {source} is not valid YAML: not UTF-8 text") from None
    return parse_yaml(text, f"file {source}")


# -- validation errors -----------------------------------------------------------------

_REPR = reprlib.Repr()
_REPR.maxstring = MAX_ECHO
_REPR.maxother = MAX_ECHO
_REPR.maxlong = 40
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6
_REPR.maxlevel = 3


def short_repr(value: Any, limit: int = MAX_ECHO) -> str:
    """``repr(value)`` bounded in time and length (long strings, big integers and deep
    or long containers are elided with ``...``), for echoing user input in errors."""
    try:
        text = _REPR.repr(value)
    except (ValueError, RecursionError):  # e.g. an int too long to print
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _models_under(root: type[BaseModel]) -> list[type[BaseModel]]:
    """``root`` and every pydantic model reachable through its field annotations."""
    import typing

    from pydantic import BaseModel

    seen: list[type[BaseModel]] = []
    stack: list[Any] = [root]
    while stack:
        ann = stack.pop()
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            if ann in seen:
                continue
            seen.append(ann)
            stack.extend(f.annotation for f in ann.model_fields.values())
        else:
            stack.extend(typing.get_args(ann))
    return seen


def _model_at(root: type[BaseModel], loc: Iterable) -> type[BaseModel] | None:
    """Best effort: the config model that owns the location ``loc`` (for 'valid keys')."""
    import typing

    from pydantic import BaseModel

    model: type[BaseModel] | None = root
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            # pydantic puts union member names (e.g. 'ScheduleSpec', 'list[...]') in loc
            continue
        found = None
        stack = [field.annotation]
        while stack:
            ann = stack.pop()
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                found = ann
                break
            stack.extend(typing.get_args(ann))
        model = found
    return model


def _describe_type(msg: str) -> str:
    text = msg.removeprefix("Input should be ")
    m = re.match(r"a valid dictionary or instance of (\w+)", text)
    if m:
        return f"a mapping ({m.group(1)})"
    return text


def format_validation_error(exc: ValidationError, source: str, root: type[BaseModel]) -> str:
    """All problems of ``exc`` (raised validating ``root``) on one line, each with its
    key path; input values are echoed only through :func:`short_repr`.

    Pydantic reports every alternative of a union (``T: 10`` or ``T: [..]`` or a range);
    where one alternative got further (a deeper path, or a value check rather than a type
    check) only its message is kept; where all failed on type, they are merged into one
    "got X; expected A, B or C".
    """
    keys = {k for m in _models_under(root) for k in m.model_fields}
    items = []
    for err in exc.errors():
        raw = list(err["loc"])
        loc = [p for j, p in enumerate(raw) if isinstance(p, int) or p in keys
               or (err["type"] == "extra_forbidden" and j == len(raw) - 1)]
        items.append((tuple(loc), err))
    paths = [loc for loc, _ in items]
    groups: dict[tuple, list[dict]] = {}
    for loc, err in items:
        deeper = any(len(p) > len(loc) and p[:len(loc)] == loc for p in paths)
        if deeper and err["type"].endswith(("_type", "_parsing")):
            continue  # another union alternative went further: report that one
        groups.setdefault(loc, []).append(err)
    problems = []
    for loc, errs in groups.items():
        path = ".".join(_loc_part(p) for p in loc) or "(top level)"
        checks = [e for e in errs if not e["type"].endswith(("_type", "_parsing"))]
        if not checks:
            wanted = list(dict.fromkeys(_describe_type(e["msg"]) for e in errs))
            got = errs[0].get("input")
            expected = wanted[0] if len(wanted) == 1 else \
                ", ".join(wanted[:-1]) + " or " + wanted[-1]
            problems.append(f"{path}: got {short_repr(got)} ({type(got).__name__}); "
                            f"expected {expected}")
            continue
        for err in checks:
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                owner = _model_at(root, loc[:-1])
                valid = ", ".join(owner.model_fields) if owner is not None else ""
                msg = (f"unknown key {short_repr(loc[-1], 40)}"
                       + (f"; valid keys here: {valid}" if valid else ""))
            elif err["type"] == "missing":
                msg = "required key is missing"
            elif err["type"] == "too_short":
                msg = "is empty; give at least one value"
            problems.append(f"{path}: {msg[:300]}")
    problems = list(dict.fromkeys(problems))
    shown = problems[:8]
    more = f"; and {len(problems) - 8} more" if len(problems) > 8 else ""
    line = f"invalid config {source}: " + "; ".join(shown) + more
    return " ".join(line.splitlines())  # one line, whatever a message held


def _loc_part(part: Any) -> str:
    """A key path element: plain keys as they are, anything odd (spaces, newlines,
    long) as a truncated repr."""
    if isinstance(part, int) or (isinstance(part, str) and re.fullmatch(r"[\w.-]{1,40}", part)):
        return str(part)
    return short_repr(part, 40)
