"""Chain tables: long-format data from serial-reproduction experiments (or simulations).

One row per (chain, iteration[, item]) with value columns named by the user, as CSV or
Parquet. Other tables (a PsyNet export, say) load through a column mapping
(``rename={"network_id": "chain", "degree": "iteration"}``) and, where the values are a
JSON list in one column (PsyNet's ``answer``/``definition``), ``json_col`` spreads it into
the value columns.

The designs people run:

* **composite ids** — the chain, item, group and cluster arguments take one column or a
  list of columns; several columns form one id, labelled ``"Seed=3|Chain=7"`` (so chain 7
  of seed 3 and chain 7 of seed 4 are different chains);
* **stimulus columns** — the stimulus shown at each iteration: the first iteration's
  stimulus becomes the seed (one iteration before the chain's first response; when the
  responses start at 0 every iteration is renumbered +1 so the seeds are iteration 0), and
  every later stimulus is checked against the previous response (the mismatch rate goes to
  the :class:`LoadReport`);
* **a row filter** (``where``, a pandas query of plain column comparisons);
* **a duplicate policy** for repeated (chain, item, iteration) rows: ``error`` (exact
  repeats are dropped with a warning, conflicting ones stop the load), ``first``, ``last``
  or ``mean`` (the circular mean for circular data);
* **groups** (participant, condition) and **clusters** (the independent unit of the
  bootstrap; default the chain), each constant within a chain, stored as integer codes;
* **circular data** (``circular=True, period=P``): values stay in the data's own range,
  [0, P) when the data are non-negative (hues 0–359), else [−P/2, P/2).

Validation on load, every message naming the chain and the data row (rows count from 1
after the header; in a CSV, data row r is file line r + 1) and saying what was done:

* a missing column, an empty table, a non-integer iteration, conflicting duplicate rows
  (under ``duplicates="error"``), a group or cluster that changes within a chain, or
  ``strict`` with any problem: **the load stops**
  (:class:`~serialrepro.errors.UserInputError`, one line with a count and a few examples);
* a non-numeric or missing value, a missing chain id, an exact duplicate row, a chain left
  with a single row: **the row is skipped** and a warning goes to the :class:`LoadReport`;
* missing iterations inside a chain: **rows kept**, a warning, and transitions are only
  taken between consecutive iterations, never across the gap.

Iterations count reproductions: a chain with rows at iterations 0..15 has 15 iterations
(:attr:`ChainTable.n_iterations`); iteration 0 is the start.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from serialrepro.circular import circular_difference
from serialrepro.errors import UserInputError, unknown_name

CHAIN, ITEM, ITERATION, KEY = "chain", "item", "iteration", "chain_key"
#: per-row integer codes of the group and the cluster (see :class:`ChainTable`)
GROUP, CLUSTER = "group_code", "cluster_code"
DUPLICATE_POLICIES = ("error", "first", "last", "mean")
#: warnings listed one by one per kind of problem; the rest are counted in one line
MAX_LISTED = 20
#: largest iteration accepted (iterations index reproductions; beyond this is a data error)
MAX_ITERATION = 10**9


@dataclass
class LoadReport:
    """What the loader saw and did; ``warnings`` lists skipped rows and gaps (the first
    :data:`MAX_LISTED` of each kind one by one, then a count)."""

    path: str
    rows_read: int = 0
    rows_kept: int = 0
    chains: int = 0
    iterations: int = 0
    rows_filtered: int = 0
    seeds_added: int = 0
    stimulus_checked: int = 0
    stimulus_mismatches: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def stimulus_mismatch_rate(self) -> float | None:
        """Fraction of checked stimuli that differ from the previous response (None when no
        stimulus column was given or nothing could be checked)."""
        return (self.stimulus_mismatches / self.stimulus_checked
                if self.stimulus_checked else None)

    def as_dict(self) -> dict:
        return {"path": self.path, "rows_read": self.rows_read, "rows_kept": self.rows_kept,
                "chains": self.chains, "iterations": self.iterations,
                "rows_filtered": self.rows_filtered, "seeds_added": self.seeds_added,
                "stimulus_checked": self.stimulus_checked,
                "stimulus_mismatches": self.stimulus_mismatches,
                "stimulus_mismatch_rate": self.stimulus_mismatch_rate,
                "warnings": self.warnings}


@dataclass
class ChainTable:
    """Validated chains: ``frame`` has columns chain, [item,] iteration, the value columns,
    chain_key (chain, or chain/item) and the integer codes ``group_code`` (when groups were
    given) and ``cluster_code``, sorted by chain_key then iteration.

    ``group_labels[code]`` / ``cluster_labels[code]`` name the codes; without a cluster
    column the cluster is the chain (all items of a chain are one unit). Circular data
    lie in [``origin``, ``origin + period``)."""

    frame: pd.DataFrame
    value_cols: list[str]
    has_item: bool
    report: LoadReport
    circular: bool = False
    period: float | None = None
    origin: float | None = None
    group_labels: list[str] | None = None
    group_name: str | None = None
    cluster_labels: list[str] | None = None
    cluster_name: str = CHAIN

    @property
    def dims(self) -> int:
        return len(self.value_cols)

    @property
    def chain_keys(self) -> np.ndarray:
        return np.asarray(self.frame[KEY].unique(), dtype=object)

    @property
    def iterations(self) -> np.ndarray:
        return np.sort(self.frame[ITERATION].unique())

    @property
    def n_iterations(self) -> int:
        """Reproductions spanned, not counting the start: rows 0..15 (or 1..15) give 15."""
        its = self.iterations
        return int(its[-1] - max(its[0] - 1, 0)) if len(its) else 0

    def _per_key(self, col: str) -> np.ndarray:
        first = ~self.frame[KEY].duplicated().to_numpy()
        return self.frame[col].to_numpy()[first]

    @property
    def group_codes(self) -> np.ndarray | None:
        """Group code of each chain key [C] (aligned with :attr:`chain_keys`), or None."""
        return None if GROUP not in self.frame else self._per_key(GROUP).astype(np.int64)

    @property
    def cluster_codes(self) -> np.ndarray:
        """Cluster code of each chain key [C] (aligned with :attr:`chain_keys`)."""
        if CLUSTER in self.frame:
            return self._per_key(CLUSTER).astype(np.int64)
        return pd.factorize(self._per_key(CHAIN))[0].astype(np.int64)

    @property
    def chain_index(self) -> np.ndarray:
        """Index of each chain key's chain (the ``chain`` column) [C]: the items of one
        multi-item chain share it."""
        return pd.factorize(self._per_key(CHAIN))[0].astype(np.int64)

    def values(self) -> np.ndarray:
        """All values, [rows, D]."""
        return self.frame[self.value_cols].to_numpy(dtype=np.float64)

    def by_iteration(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(iterations [I], chain keys [C], values [C, I, D] with NaN where a chain has no
        row at that iteration)."""
        its = self.iterations
        keys = self.chain_keys
        ci = pd.Index(keys).get_indexer(self.frame[KEY])
        ii = np.searchsorted(its, self.frame[ITERATION].to_numpy())
        out = np.full((len(keys), len(its), self.dims), np.nan)
        out[ci, ii] = self.values()
        return its, keys, out

    def transitions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Observed transitions x_n → x_{n+1} between consecutive iterations of the same
        chain: (x_n [N, D], x_{n+1} [N, D], chain index [N] into :attr:`chain_keys`)."""
        f = self.frame
        v = self.values()
        same = (f[KEY].to_numpy()[1:] == f[KEY].to_numpy()[:-1])
        step = np.diff(f[ITERATION].to_numpy()) == 1
        ok = np.flatnonzero(same & step)
        chain_idx = pd.Index(self.chain_keys).get_indexer(f[KEY].to_numpy()[ok])
        return v[ok], v[ok + 1], chain_idx

    def displays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Rows grouped into displays, the items of one chain at one iteration:
        (values [N, D], display id [N], iteration [N], cluster code [N]) — the inputs of
        :func:`serialrepro.chains.display.display_stats`."""
        f = self.frame
        disp = pd.factorize(pd.MultiIndex.from_arrays([f[CHAIN], f[ITERATION]]))[0]
        cluster = (f[CLUSTER].to_numpy() if CLUSTER in f
                   else pd.factorize(f[CHAIN])[0])
        return (self.values(), disp.astype(np.int64), f[ITERATION].to_numpy(np.int64),
                np.asarray(cluster, dtype=np.int64))

    def with_frame(self, frame: pd.DataFrame) -> ChainTable:
        """The same table (metadata, report) over a new frame, sorted as required."""
        frame = frame.sort_values([KEY, ITERATION], kind="stable").reset_index(drop=True)
        return replace(self, frame=frame)


def _describe(chain: object, item: object | None) -> str:
    return f"chain {chain!r}" + ("" if item is None else f" (item {item!r})")


def _read(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise UserInputError(f"data file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv", ".txt"):
            return pd.read_csv(path, dtype=str, keep_default_na=False,
                               sep="\t" if suffix == ".tsv" else ",")
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise UserInputError(f"cannot read {str(path)!r}: {str(exc).splitlines()[0]}") from None
    raise UserInputError(f"data file {str(path)!r} must be .csv, .tsv or .parquet")


def _numeric(col: pd.Series) -> pd.Series:
    """Numbers as float64, NaN for anything that is not a finite number."""
    out = pd.to_numeric(col, errors="coerce").astype("float64")
    return out.where(np.isfinite(out))


def _columns(arg: str | Sequence[str] | None, columns: pd.Index) -> list[str]:
    """One column name or several ("Seed,Chain" or ["Seed", "Chain"])."""
    if arg is None:
        return []
    if isinstance(arg, str):
        arg = [arg] if arg in columns else arg.split(",")
    names = [str(c).strip() for c in arg if str(c).strip()]
    if len(set(names)) != len(names):
        raise UserInputError(f"id columns {names} repeat a name")
    return names


def _ids(raw: pd.DataFrame, cols: list[str]) -> pd.Series:
    """Id labels: the value for one column, "A=a|B=b" for several; NaN when any is missing."""
    parts, missing = [], np.zeros(len(raw), dtype=bool)
    for c in cols:
        s = raw[c].astype(str).str.strip()
        missing |= (raw[c].isna() | (s == "") | (s == "nan")).to_numpy()
        parts.append(s if len(cols) == 1 else c + "=" + s)
    label = parts[0]
    for p in parts[1:]:
        label = label + "|" + p
    return label.where(~missing)


def _examples(items: Sequence[str], count: int) -> str:
    shown = "; ".join(items[:2])
    return shown + (f"; … ({count} in all)" if count > len(items[:2]) else "")


# -- the row filter -------------------------------------------------------------------------

_WHERE_NODES = (
    ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd,
    ast.Invert, ast.Compare, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In,
    ast.NotIn, ast.BinOp, ast.BitAnd, ast.BitOr, ast.Add, ast.Sub, ast.Mult, ast.Div,
    ast.Mod, ast.Name, ast.Load, ast.Constant, ast.List, ast.Tuple,
)


def _apply_where(raw: pd.DataFrame, expr: str) -> np.ndarray:
    """Boolean row mask of a pandas query made of plain column comparisons joined by
    and / or / not (backticks quote column names with spaces)."""
    cols = list(raw.columns)
    hint = (f"--where {expr!r} must compare columns of the table (==, !=, <, <=, >, >=, "
            f"in, not in; joined by and, or, not); columns: {cols}")
    if "@" in expr:
        raise UserInputError(f"{hint}; '@' (local variables) is not allowed")
    quoted: dict[str, str] = {}

    def placeholder(m: re.Match) -> str:
        name = f"_quoted_column_{len(quoted)}"
        quoted[name] = m.group(1)
        return name

    try:
        tree = ast.parse(re.sub(r"`([^`]*)`", placeholder, expr), mode="eval")
    except SyntaxError:
        raise UserInputError(f"{hint}; it is not a valid expression") from None
    used: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, _WHERE_NODES):
            raise UserInputError(f"{hint}; {type(node).__name__.lower()} is not allowed")
        if isinstance(node, ast.Name):
            name = quoted.get(node.id, node.id)
            if name not in cols:
                raise UserInputError(f"{hint}; there is no column {name!r}")
            used.append(name)
    frame = raw[list(dict.fromkeys(used))].copy()
    for c in frame.columns:  # a CSV is read as text: compare numbers as numbers
        if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c]):
            text = frame[c].astype(str).str.strip()
            num = pd.to_numeric(text.where(text != ""), errors="coerce")
            if num[text != ""].notna().all():
                frame[c] = num
    try:
        mask = frame.eval(expr, engine="python")
    except Exception as exc:  # pandas raises many types for a bad query: all are user input
        why = " ".join(str(exc).split())[:200]
        raise UserInputError(f"{hint}; it failed: {why}") from None
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.shape != (len(raw),):
        raise UserInputError(f"{hint}; it does not give true or false for each row")
    return mask


# -- loading --------------------------------------------------------------------------------


class _Skipper:
    """Collects skipped rows: one warning per row for the first MAX_LISTED of each kind,
    then a count; ``strict`` stops at the first."""

    def __init__(self, n: int, report: LoadReport, strict: bool, rows: np.ndarray,
                 chain: pd.Series, item: pd.Series | None) -> None:
        self.bad = np.zeros(n, dtype=bool)
        self.report, self.strict, self.rows = report, strict, rows
        self.chain, self.item = chain, item

    def __call__(self, mask: np.ndarray, why) -> None:
        hit = np.flatnonzero(mask & ~self.bad)
        for i in hit[:MAX_LISTED]:
            who = _describe(self.chain.iloc[i], None if self.item is None else self.item.iloc[i])
            msg = f"data row {self.rows[i]} ({who}): {why(i)}"
            if self.strict:
                raise UserInputError(msg + "; the load stopped (strict)")
            self.report.warnings.append(msg + "; row skipped")
        if len(hit) > MAX_LISTED:
            self.report.warnings.append(f"… {len(hit) - MAX_LISTED} more rows skipped for the "
                                        "same reason")
        self.bad |= mask


def load_chains(
    path: str | Path,
    value_cols: list[str],
    chain_col: str | Sequence[str] = CHAIN,
    iteration_col: str = ITERATION,
    item_col: str | Sequence[str] | None = None,
    rename: dict[str, str] | None = None,
    json_col: str | None = None,
    strict: bool = False,
    *,
    stimulus_cols: Sequence[str] | None = None,
    stimulus_tol: float = 1e-3,
    where: str | None = None,
    duplicates: str = "error",
    group_cols: str | Sequence[str] | None = None,
    cluster_cols: str | Sequence[str] | None = None,
    circular: bool = False,
    period: float | None = None,
) -> ChainTable:
    """Load and validate a long-format chain table (see the module docstring).

    ``rename`` maps the file's column names to the names used here (applied first, so the
    other arguments and ``where`` use the new names); ``json_col`` names a column holding a
    JSON list with one number per value column. ``chain_col``, ``item_col``,
    ``group_cols`` and ``cluster_cols`` take one column or several (a composite id).
    ``stimulus_cols`` has one column per value column (or one JSON-list column);
    a stimulus differing from the previous response by more than ``stimulus_tol`` × the
    data's scale (its range, or the period) counts as a mismatch. ``strict`` stops the load
    at the first problem instead of skipping.
    """
    path = Path(path)
    report = LoadReport(str(path))
    value_cols = [str(c).strip() for c in value_cols if str(c).strip()]
    if not value_cols:
        raise UserInputError("give at least one value column (e.g. --value-cols x,y)")
    if len(set(value_cols)) != len(value_cols):
        raise UserInputError(f"value columns {value_cols} repeat a name")
    reserved = {CHAIN, ITEM, ITERATION, KEY, GROUP, CLUSTER, "_row"} & set(value_cols)
    if reserved:
        raise UserInputError(f"value column name(s) {sorted(reserved)} are reserved; rename "
                             "them with --map SOURCE=TARGET")
    if duplicates not in DUPLICATE_POLICIES:
        raise unknown_name("duplicates policy", duplicates, DUPLICATE_POLICIES)
    if circular:
        if period is None or not (math.isfinite(period) and period > 0):
            raise UserInputError(f"circular data need a period > 0, got {period!r}")
        period = float(period)
    else:
        period = None
    if not (math.isfinite(stimulus_tol) and stimulus_tol >= 0):
        raise UserInputError(f"stimulus tolerance {stimulus_tol!r} must be a number ≥ 0")

    raw = _read(path).reset_index(drop=True)  # a Parquet index may repeat labels
    if rename:
        missing = [c for c in rename if c not in raw.columns]
        if missing:
            raise UserInputError(f"column mapping names {missing} but {str(path)!r} has "
                                 f"columns {list(raw.columns)}; the load stopped")
        raw = raw.rename(columns=rename)
    report.rows_read = len(raw)
    if raw.empty:
        raise UserInputError(f"{str(path)!r} has no data rows; the load stopped")
    chain_cols = _columns(chain_col, raw.columns)
    item_cols = _columns(item_col, raw.columns)
    group_list = _columns(group_cols, raw.columns)
    cluster_list = _columns(cluster_cols, raw.columns)
    stim_cols = _columns(stimulus_cols, raw.columns)
    if not chain_cols:
        raise UserInputError("give a chain column (--chain-col)")
    if stim_cols and len(stim_cols) not in (1, len(value_cols)) or (
            len(stim_cols) == 1 and len(value_cols) > 1 and not json_col):
        raise UserInputError(f"stimulus columns {stim_cols} must give one column per value "
                             f"column {value_cols} (or one JSON-list column with --json-col)")
    need = chain_cols + [iteration_col] + item_cols + group_list + cluster_list + stim_cols
    need += [json_col] if json_col else value_cols
    missing = [c for c in dict.fromkeys(need) if c not in raw.columns]
    if missing:
        raise UserInputError(f"{str(path)!r} has no column(s) {missing}; it has "
                             f"{list(raw.columns)}; the load stopped (map names with "
                             "--map SOURCE=TARGET or the --*-col options)")

    rows = np.arange(1, len(raw) + 1)  # data row numbers as the user counts them
    if where is not None and str(where).strip():
        keep = _apply_where(raw, str(where))
        report.rows_filtered = int((~keep).sum())
        raw, rows = raw[keep].reset_index(drop=True), rows[keep]
        if raw.empty:
            raise UserInputError(f"--where {where!r} keeps none of the {report.rows_read} "
                                 "rows; the load stopped")

    chain = _ids(raw, chain_cols)
    item = _ids(raw, item_cols) if item_cols else None
    iteration = _iterations(raw[iteration_col], iteration_col, rows)
    if json_col:
        values = _spread_json(raw[json_col], value_cols)
    else:
        values = pd.DataFrame({c: _numeric(raw[c]) for c in value_cols})
    stim = None
    if stim_cols:
        stim = (_spread_json(raw[stim_cols[0]], value_cols).to_numpy()
                if len(stim_cols) == 1 and len(value_cols) > 1
                else np.column_stack([_numeric(raw[c]).to_numpy() for c in stim_cols]))

    skip = _Skipper(len(raw), report, strict, rows, chain, item)
    skip(chain.isna().to_numpy(), lambda i: f"no chain id in column(s) {chain_cols}")
    if item is not None:
        skip(item.isna().to_numpy(), lambda i: f"no item in column(s) {item_cols}")
    for c in value_cols:
        src = json_col or c
        skip(np.isnan(values[c].to_numpy()),
             lambda i, src=src: _bad_value(raw[src].iloc[i], src, json_col))
    labels: dict[str, pd.Series] = {}
    for kind, cols in (("group", group_list), ("cluster", cluster_list)):
        if cols:
            labels[kind] = _ids(raw, cols)
            skip(labels[kind].isna().to_numpy(),
                 lambda i, kind=kind, cols=cols: f"no {kind} in column(s) {cols}")

    frame = pd.DataFrame({CHAIN: chain, ITERATION: iteration})
    if item is not None:
        frame[ITEM] = item
    for c in value_cols:
        frame[c] = values[c]
    for kind, lab in labels.items():
        frame["_" + kind] = lab
    frame["_row"] = rows
    if stim is not None:
        stim_names = [f"_stim{k}" for k in range(len(value_cols))]
        frame[stim_names] = stim
    frame = frame[~skip.bad].copy()
    frame[KEY] = frame[CHAIN] if item is None else frame[CHAIN] + "/" + frame[ITEM]
    if item is not None:
        n_pairs = len(frame[[CHAIN, ITEM]].drop_duplicates())
        if n_pairs != frame[KEY].nunique():
            raise UserInputError("chain and item ids containing '/' make chain/item keys "
                                 "ambiguous (e.g. 'a/b' + 'c' and 'a' + 'b/c'); the load "
                                 "stopped: rename the ids")

    origin = None
    if period is not None:
        cols = value_cols + (stim_names if stim is not None else [])
        lo = np.nanmin(frame[cols].to_numpy()) if len(frame) else 0.0
        origin = 0.0 if lo >= 0 else -period / 2
        frame[cols] = np.mod(frame[cols].to_numpy() - origin, period) + origin

    frame = _resolve_duplicates(frame, value_cols, stim is not None, duplicates, period,
                                origin, report, strict)
    frame = frame.sort_values([KEY, ITERATION], kind="stable").reset_index(drop=True)
    if stim is not None:
        scale = period if period is not None else float(np.ptp(frame[value_cols].to_numpy()))
        tol = stimulus_tol * (scale if scale > 0 else 1.0)
        frame = _add_seeds_and_check(frame, value_cols, stim_names, tol, period, report,
                                     strict)
    frame = _check_gaps_and_singletons(frame, item is not None, report, strict)
    if frame.empty:
        first = "; ".join(report.warnings[:3])
        raise UserInputError(f"no usable rows left in {str(path)!r} after validation; the load "
                             f"stopped ({len(report.warnings)} problem(s), first: {first})")

    group_labels = cluster_labels = None
    for kind, cols in (("group", group_list), ("cluster", cluster_list)):
        if not cols:
            continue
        _constant_within_chains(frame, "_" + kind, kind, cols)
        codes, uniques = pd.factorize(frame["_" + kind], sort=True)
        frame[GROUP if kind == "group" else CLUSTER] = codes.astype(np.int64)
        if kind == "group":
            group_labels = [str(u) for u in uniques]
        else:
            cluster_labels = [str(u) for u in uniques]
    if not cluster_list:
        codes, uniques = pd.factorize(frame[CHAIN], sort=True)
        frame[CLUSTER] = codes.astype(np.int64)
        cluster_labels = [str(u) for u in uniques]

    report.rows_kept = len(frame)
    report.chains = frame[KEY].nunique()
    cols = [CHAIN] + ([ITEM] if item is not None else []) + [ITERATION, *value_cols, KEY]
    cols += ([GROUP] if group_list else []) + [CLUSTER]
    table = ChainTable(frame[cols].reset_index(drop=True), value_cols, item is not None,
                       report, circular=period is not None, period=period, origin=origin,
                       group_labels=group_labels,
                       group_name=",".join(group_list) if group_list else None,
                       cluster_labels=cluster_labels,
                       cluster_name=",".join(cluster_list or chain_cols))
    report.iterations = table.n_iterations
    return table


def _iterations(col: pd.Series, name: str, rows: np.ndarray) -> np.ndarray:
    """Iterations as int64; anything but a whole number in 0..MAX_ITERATION stops the load."""
    it = pd.to_numeric(col, errors="coerce").astype("float64").to_numpy()
    bad = ~np.isfinite(it) | (np.round(it) != it) | (it < 0) | (it > MAX_ITERATION)
    if bad.any():
        idx = np.flatnonzero(bad)
        i = idx[0]
        more = f" ({len(idx)} such rows)" if len(idx) > 1 else ""
        raise UserInputError(f"data row {rows[i]}: iteration {col.iloc[i]!r} in column "
                             f"{name!r} is not an integer in 0..{MAX_ITERATION}{more}; the "
                             "load stopped")
    return it.astype(np.int64)


def _bad_value(value: object, column: str, json_col: str | None) -> str:
    empty = value is None or (isinstance(value, float) and math.isnan(value))
    if empty or str(value).strip() == "":
        return f"the value in column {column!r} is missing"
    if json_col:
        return f"{value!r} in column {column!r} is not a JSON list of finite numbers"
    return f"value {value!r} in column {column!r} is not a finite number"


def _spread_json(col: pd.Series, value_cols: list[str]) -> pd.DataFrame:
    """Parse a column of JSON lists (or a JSON number, for one value column)."""
    out = np.full((len(col), len(value_cols)), np.nan)
    for i, text in enumerate(col.astype(str)):  # parsing text is per row by nature
        try:
            v = json.loads(text)
        except (json.JSONDecodeError, TypeError):
            continue
        v = [v] if isinstance(v, int | float) and not isinstance(v, bool) else v
        if (isinstance(v, list) and len(v) == len(value_cols)
                and all(isinstance(a, int | float) and not isinstance(a, bool)
                        and math.isfinite(a) for a in v)):
            out[i] = v
    return pd.DataFrame(out, columns=value_cols, index=col.index)


def _who(frame: pd.DataFrame, i: int) -> str:
    row = frame.iloc[i]
    return _describe(row[CHAIN], row[ITEM] if ITEM in frame else None)


def _resolve_duplicates(frame: pd.DataFrame, value_cols: list[str], has_stim: bool,
                        policy: str, period: float | None, origin: float | None,
                        report: LoadReport, strict: bool) -> pd.DataFrame:
    """Apply the duplicate policy to repeated (chain key, iteration) rows, vectorised."""
    keycols = [KEY, ITERATION]
    dup = frame.duplicated(keycols, keep=False).to_numpy()
    if not dup.any():
        return frame
    cols = value_cols + ([c for c in frame.columns if c.startswith("_stim")] if has_stim else [])
    d = frame[dup]
    g = d.groupby(keycols, sort=False)
    group_id = g.ngroup().to_numpy()
    n_groups = int(group_id.max()) + 1
    first_row = g["_row"].transform("first").to_numpy()
    first_vals = g[cols].transform("first").to_numpy()
    vals = d[cols].to_numpy()
    differs = ~((vals == first_vals) | (np.isnan(vals) & np.isnan(first_vals))).all(axis=1)
    conflicting = np.unique(group_id[differs])

    def example(gid: int) -> str:
        at = np.flatnonzero(group_id == gid)
        r = ", ".join(str(x) for x in d["_row"].to_numpy()[at][:4])
        return f"data rows {r} give {_who(d, at[0])} iteration {d[ITERATION].iloc[at[0]]}"

    if strict or (policy == "error" and len(conflicting)):
        bad = conflicting if len(conflicting) else np.arange(n_groups)
        what = "with different values " if len(conflicting) else ""
        raise UserInputError(
            f"{len(bad)} (chain, item, iteration) group(s) repeat {what}"
            f"({_examples([example(int(x)) for x in bad[:2]], len(bad))}); the load stopped"
            + (" (strict)" if strict else " (duplicates=error; choices: error, first, last, "
               "mean)"))
    extra = np.flatnonzero(dup)[d.duplicated(keycols, keep="first").to_numpy()]
    if policy == "error":  # only exact repeats are left: drop them
        listed = extra[:MAX_LISTED]
        pos = np.searchsorted(np.flatnonzero(dup), listed)
        for i, p in zip(listed, pos, strict=True):
            report.warnings.append(
                f"data row {frame['_row'].iloc[i]} ({_who(frame, i)}): duplicates data row "
                f"{first_row[p]} (iteration {frame[ITERATION].iloc[i]}, same values); "
                "row skipped")
        if len(extra) > MAX_LISTED:
            report.warnings.append(f"… {len(extra) - MAX_LISTED} more exact duplicate rows "
                                   "skipped")
        return frame.drop(index=frame.index[extra])
    report.warnings.append(
        f"{n_groups} (chain, item, iteration) group(s) repeat ({len(conflicting)} with "
        f"different values, e.g. {example(int(conflicting[0]) if len(conflicting) else 0)}); "
        + {"first": "kept the first row of each", "last": "kept the last row of each",
           "mean": "averaged each" + (" (circular mean)" if period else "")}[policy]
        + f" (duplicates={policy})")
    if policy in ("first", "last"):
        return frame[~frame.duplicated(keycols, keep=policy).to_numpy()]
    out = frame[~frame.duplicated(keycols, keep="first").to_numpy()].copy()
    if period is None:
        means = g[cols].mean()
    else:
        ang = 2 * np.pi * (vals - origin) / period
        trig = pd.DataFrame(np.c_[np.sin(ang), np.cos(ang)], index=d.index)
        s = trig.groupby([d[KEY], d[ITERATION]], sort=False).mean().to_numpy()
        k = len(cols)
        mean_ang = np.arctan2(s[:, :k], s[:, k:])
        means = pd.DataFrame(np.mod(mean_ang * period / (2 * np.pi), period) + origin,
                             index=g[cols].mean().index, columns=cols)
    at = pd.MultiIndex.from_frame(out[keycols])
    hit = means.index.get_indexer(at)
    sel = hit >= 0
    vals_out = out[cols].to_numpy(dtype=np.float64, copy=True)
    vals_out[sel] = means.to_numpy()[hit[sel]]
    out[cols] = vals_out
    return out


def _add_seeds_and_check(frame: pd.DataFrame, value_cols: list[str], stim_names: list[str],
                         tol: float, period: float | None, report: LoadReport,
                         strict: bool) -> pd.DataFrame:
    """Seeds from the first stimulus of each chain; later stimuli checked against the
    previous response. ``frame`` is sorted by chain key and iteration."""
    key = frame[KEY].to_numpy()
    it = frame[ITERATION].to_numpy()
    v = frame[value_cols].to_numpy(np.float64)
    s = frame[stim_names].to_numpy(np.float64)
    first = np.r_[True, key[1:] != key[:-1]]
    # the table already holds the seeds when every chain starts at iteration 0 with a row
    # showing its own value (decided for the whole table: one participant reproducing a
    # stimulus exactly must not drop that chain's seed)
    own = np.abs(circular_difference(s[first], v[first], period)).max(axis=1) <= tol
    has_seeds = bool(np.all(it[first] == 0) and np.all(own))
    add = first & np.isfinite(s).all(axis=1) & (not has_seeds)
    no_stim = first & ~np.isfinite(s).all(axis=1)
    if no_stim.any():
        report.warnings.append(
            f"{int(no_stim.sum())} chain(s) have no stimulus at their first iteration (e.g. "
            f"data row {frame['_row'].iloc[np.flatnonzero(no_stim)[0]]}); no seed added")
    prev = np.r_[False, (key[1:] == key[:-1]) & (np.diff(it) == 1)]
    idx = np.flatnonzero(prev & np.isfinite(s).all(axis=1))
    dev = np.abs(circular_difference(s[idx], v[idx - 1], period)).max(axis=1)
    bad = idx[dev > tol]
    report.stimulus_checked = len(idx)
    report.stimulus_mismatches = len(bad)
    if len(bad):
        ex = [f"data row {frame['_row'].iloc[i]} ({_who(frame, i)}, iteration {it[i]}) shows "
              f"{s[i].tolist()} after the response {v[i - 1].tolist()}" for i in bad[:2]]
        msg = (f"{len(bad)} of {len(idx)} stimuli ({len(bad) / len(idx):.1%}) differ from the "
               f"previous response by more than {tol:.3g} ({_examples(ex, len(bad))})")
        if strict:
            raise UserInputError(msg + "; the load stopped (strict)")
        report.warnings.append(msg)
    seeds = frame[add].copy()
    seeds[value_cols] = s[add]
    seeds[ITERATION] = it[add] - 1
    out = pd.concat([frame, seeds], ignore_index=True)
    if len(seeds) and seeds[ITERATION].min() < 0:
        out[ITERATION] += 1
        report.warnings.append("responses start at iteration 0: every iteration renumbered "
                               "+1 so that the seeds (first stimuli) are iteration 0")
    report.seeds_added = len(seeds)
    out = out.drop(columns=stim_names)
    return out.sort_values([KEY, ITERATION], kind="stable").reset_index(drop=True)


def _constant_within_chains(frame: pd.DataFrame, col: str, kind: str,
                            cols: list[str]) -> None:
    n = frame.groupby(CHAIN, sort=False)[col].nunique()
    bad = n[n > 1]
    if len(bad):
        ex = []
        for c in bad.index[:2]:
            vals = frame.loc[frame[CHAIN] == c, col].unique()[:3]
            ex.append(f"chain {c!r} has {', '.join(repr(str(x)) for x in vals)}")
        raise UserInputError(f"the {kind} (column(s) {cols}) changes within {len(bad)} "
                             f"chain(s) ({_examples(ex, len(bad))}); it must be constant "
                             "within a chain; the load stopped")


def _check_gaps_and_singletons(frame: pd.DataFrame, has_item: bool, report: LoadReport,
                               strict: bool) -> pd.DataFrame:
    """Vectorised: single-row chains dropped, gaps reported (``frame`` sorted)."""
    key = frame[KEY].to_numpy()
    it = frame[ITERATION].to_numpy()
    n = len(frame)
    start = np.r_[True, key[1:] != key[:-1]] if n else np.zeros(0, bool)
    end = np.r_[key[1:] != key[:-1], True] if n else np.zeros(0, bool)
    single = np.flatnonzero(start & end)
    for i in single[:MAX_LISTED]:
        msg = (f"data row {frame['_row'].iloc[i]} ({_who(frame, i)}): the chain has a single "
               "row, so no transitions")
        if strict:
            raise UserInputError(msg + "; the load stopped (strict)")
        report.warnings.append(msg + "; row skipped")
    if len(single) > MAX_LISTED:
        report.warnings.append(f"… {len(single) - MAX_LISTED} more single-row chains skipped")
    gap = np.flatnonzero(~start[1:] & (np.diff(it) > 1))  # rows i with a gap before i + 1
    if len(gap):
        chain_of_gap = np.cumsum(start)[gap]  # chain number (1-based) of each gap
        _, first_gap = np.unique(chain_of_gap, return_index=True)
        starts_idx = np.flatnonzero(start)
        ends_idx = np.flatnonzero(end)
        for k, fg in enumerate(first_gap[:MAX_LISTED]):
            c = chain_of_gap[fg] - 1
            upto = first_gap[k + 1] if k + 1 < len(first_gap) else len(gap)
            missing: list[int] = []
            for g in gap[fg:upto]:
                missing.extend(range(it[g] + 1, min(it[g + 1], it[g] + 12)))
                if len(missing) > 10:
                    break
            shown = ", ".join(str(m) for m in missing[:10]) + (" …" if len(missing) > 10
                                                                else "")
            lo, hi = it[starts_idx[c]], it[ends_idx[c]]
            msg = (f"{_who(frame, starts_idx[c])} is missing iteration(s) {shown} (it has "
                   f"{lo}–{hi})")
            if strict:
                raise UserInputError(msg + "; the load stopped (strict)")
            report.warnings.append(msg + "; rows kept, transitions across the gap are not used")
        if len(first_gap) > MAX_LISTED:
            report.warnings.append(f"… {len(first_gap) - MAX_LISTED} more chains have missing "
                                   "iterations; rows kept, transitions across gaps not used")
    return frame[~(start & end)]
