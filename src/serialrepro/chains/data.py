"""Chain tables: long-format data from serial-reproduction experiments (or simulations).

One row per (chain, iteration[, item]) with value columns named by the user, as CSV or
Parquet. Other tables (a PsyNet export, say) load through a column mapping
(``rename={"network_id": "chain", "degree": "iteration"}``) and, where the values are a
JSON list in one column (PsyNet's ``answer``/``definition``), ``json_col`` spreads it into
the value columns.

Validation on load, every message naming the chain and the data row (rows count from 1
after the header; in a CSV, data row r is file line r + 1) and saying what was done:

* a missing column, an empty table, conflicting duplicate rows (same chain, item and
  iteration, different values), or ``strict`` with any problem: **the load stops**
  (:class:`~serialrepro.errors.UserInputError`);
* a non-numeric or missing value, a missing or non-integer iteration, a missing chain
  id, an exact duplicate row, a chain left with a single row: **the row is skipped** and
  a warning goes to the :class:`LoadReport`;
* missing iterations inside a chain: **rows kept**, a warning, and transitions are only
  taken between consecutive iterations, never across the gap.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from serialrepro.errors import UserInputError

CHAIN, ITEM, ITERATION, KEY = "chain", "item", "iteration", "chain_key"


@dataclass
class LoadReport:
    """What the loader saw and did; ``warnings`` lists every skipped row or gap."""

    path: str
    rows_read: int = 0
    rows_kept: int = 0
    chains: int = 0
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"path": self.path, "rows_read": self.rows_read, "rows_kept": self.rows_kept,
                "chains": self.chains, "warnings": self.warnings}


@dataclass
class ChainTable:
    """Validated chains: ``frame`` has columns chain, [item,] iteration, the value columns
    and chain_key (chain, or chain/item), sorted by chain_key then iteration."""

    frame: pd.DataFrame
    value_cols: list[str]
    has_item: bool
    report: LoadReport

    @property
    def dims(self) -> int:
        return len(self.value_cols)

    @property
    def chain_keys(self) -> np.ndarray:
        return np.asarray(self.frame[KEY].unique(), dtype=object)

    @property
    def iterations(self) -> np.ndarray:
        return np.sort(self.frame[ITERATION].unique())

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


def load_chains(
    path: str | Path,
    value_cols: list[str],
    chain_col: str = CHAIN,
    iteration_col: str = ITERATION,
    item_col: str | None = None,
    rename: dict[str, str] | None = None,
    json_col: str | None = None,
    strict: bool = False,
) -> ChainTable:
    """Load and validate a long-format chain table (see the module docstring).

    ``rename`` maps the file's column names to the names used here (applied first);
    ``json_col`` names a column holding a JSON list with one number per value column.
    ``strict`` stops the load at the first problem instead of skipping.
    """
    path = Path(path)
    report = LoadReport(str(path))
    value_cols = [str(c).strip() for c in value_cols if str(c).strip()]
    if not value_cols:
        raise UserInputError("give at least one value column (e.g. --value-cols x,y)")
    if len(set(value_cols)) != len(value_cols):
        raise UserInputError(f"value columns {value_cols} repeat a name")
    raw = _read(path)
    if rename:
        missing = [c for c in rename if c not in raw.columns]
        if missing:
            raise UserInputError(f"column mapping names {missing} but {str(path)!r} has "
                                 f"columns {list(raw.columns)}; the load stopped")
        raw = raw.rename(columns=rename)
    report.rows_read = len(raw)
    if raw.empty:
        raise UserInputError(f"{str(path)!r} has no data rows; the load stopped")
    need = [chain_col, iteration_col] + ([item_col] if item_col else [])
    need += [json_col] if json_col else value_cols
    missing = [c for c in need if c not in raw.columns]
    if missing:
        raise UserInputError(f"{str(path)!r} has no column(s) {missing}; it has "
                             f"{list(raw.columns)}; the load stopped (map names with "
                             "--map SOURCE=TARGET or the --*-col options)")

    rows = np.arange(1, len(raw) + 1)  # data row numbers as the user counts them
    chain = raw[chain_col].astype(str).str.strip()
    chain = chain.where(raw[chain_col].notna() & (chain != "") & (chain != "nan"))
    item = None
    if item_col:
        item = raw[item_col].astype(str).str.strip()
        item = item.where(raw[item_col].notna() & (item != "") & (item != "nan"))
    iteration = _numeric(raw[iteration_col])
    if json_col:
        values = _spread_json(raw[json_col], value_cols)
    else:
        values = pd.DataFrame({c: _numeric(raw[c]) for c in value_cols})

    bad = np.zeros(len(raw), dtype=bool)

    def skip(mask: np.ndarray, why) -> None:
        for i in np.flatnonzero(mask & ~bad):
            who = _describe(chain.iloc[i], None if item is None else item.iloc[i])
            msg = f"data row {rows[i]} ({who}): {why(i)}"
            if strict:
                raise UserInputError(msg + "; the load stopped (strict)")
            report.warnings.append(msg + "; row skipped")
        bad[:] |= mask

    skip(chain.isna().to_numpy(), lambda i: f"no chain id in column {chain_col!r}")
    if item is not None:
        skip(item.isna().to_numpy(), lambda i: f"no item in column {item_col!r}")
    it = iteration.to_numpy()
    skip(~np.isfinite(it) | (np.round(it) != it),
         lambda i: f"iteration {raw[iteration_col].iloc[i]!r} is not an integer")
    for c in value_cols:
        col = values[c].to_numpy()
        src = json_col or c
        skip(np.isnan(col), lambda i, c=c, src=src: _bad_value(raw[src].iloc[i], src, json_col))

    frame = pd.DataFrame({CHAIN: chain, ITERATION: iteration})
    if item is not None:
        frame[ITEM] = item
    for c in value_cols:
        frame[c] = values[c]
    frame["_row"] = rows
    frame = frame[~bad].copy()
    frame[ITERATION] = frame[ITERATION].astype(np.int64)
    frame[KEY] = frame[CHAIN] if item is None else frame[CHAIN] + "/" + frame[ITEM]
    if item is not None:
        n_pairs = len(frame[[CHAIN, ITEM]].drop_duplicates())
        if n_pairs != frame[KEY].nunique():
            raise UserInputError("chain and item ids containing '/' make chain/item keys "
                                 "ambiguous (e.g. 'a/b' + 'c' and 'a' + 'b/c'); the load "
                                 "stopped: rename the ids")

    frame = _drop_duplicates(frame, value_cols, item is not None, report, strict)
    frame = frame.sort_values([KEY, ITERATION], kind="stable").reset_index(drop=True)
    frame = _check_gaps_and_singletons(frame, item is not None, report, strict)
    if frame.empty:
        first = "; ".join(report.warnings[:3])
        raise UserInputError(f"no usable rows left in {str(path)!r} after validation; the load "
                             f"stopped ({len(report.warnings)} problem(s), first: {first})")
    report.rows_kept = len(frame)
    report.chains = frame[KEY].nunique()
    cols = [CHAIN] + ([ITEM] if item is not None else []) + [ITERATION, *value_cols, KEY]
    return ChainTable(frame[cols].reset_index(drop=True), value_cols, item is not None, report)


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


def _drop_duplicates(frame: pd.DataFrame, value_cols: list[str], has_item: bool,
                     report: LoadReport, strict: bool) -> pd.DataFrame:
    keycols = [KEY, ITERATION]
    dup = frame.duplicated(keycols, keep=False)
    if not dup.any():
        return frame
    groups = frame[dup].groupby(keycols, sort=False)
    drop: list[int] = []
    for _, g in groups:  # one group per duplicated (chain, iteration): few in real data
        first = g.iloc[0]
        who = _describe(first[CHAIN], first[ITEM] if has_item else None)
        same = (g[value_cols].to_numpy() == g[value_cols].to_numpy()[0]).all()
        if not same or strict:
            raise UserInputError(
                f"data rows {', '.join(str(r) for r in g['_row'])} all give {who} iteration "
                f"{first[ITERATION]}" + (" with different values" if not same else "")
                + "; the load stopped (keep one of them)")
        for _, row in g.iloc[1:].iterrows():
            report.warnings.append(
                f"data row {row['_row']} ({who}): duplicates data row {first['_row']} "
                f"(iteration {first[ITERATION]}, same values); row skipped")
            drop.append(row.name)
    return frame.drop(index=drop)


def _check_gaps_and_singletons(frame: pd.DataFrame, has_item: bool, report: LoadReport,
                               strict: bool) -> pd.DataFrame:
    stats = frame.groupby(KEY, sort=False).agg(
        n=(ITERATION, "size"), lo=(ITERATION, "min"), hi=(ITERATION, "max"),
        row=("_row", "first"), chain=(CHAIN, "first"),
        **({"item": (ITEM, "first")} if has_item else {}))
    single = stats[stats["n"] == 1]
    for _key, s in single.iterrows():
        msg = (f"data row {s['row']} ({_describe(s['chain'], s['item'] if has_item else None)}): "
               f"the chain has a single row, so no transitions")
        if strict:
            raise UserInputError(msg + "; the load stopped (strict)")
        report.warnings.append(msg + "; row skipped")
    gappy = stats[(stats["n"] > 1) & (stats["hi"] - stats["lo"] + 1 > stats["n"])]
    for key, s in gappy.iterrows():
        have = frame.loc[frame[KEY] == key, ITERATION].to_numpy()
        missing = np.setdiff1d(np.arange(s["lo"], s["hi"] + 1), have)
        shown = ", ".join(str(m) for m in missing[:10]) + (" …" if len(missing) > 10 else "")
        msg = (f"{_describe(s['chain'], s['item'] if has_item else None)} is missing "
               f"iteration(s) {shown} (it has {s['lo']}–{s['hi']})")
        if strict:
            raise UserInputError(msg + "; the load stopped (strict)")
        report.warnings.append(msg + "; rows kept, transitions across the gap are not used")
    return frame[~frame[KEY].isin(single.index)]
