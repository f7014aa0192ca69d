"""A self-contained HTML report: one file, images embedded, no network.

Images are PNGs embedded as ``data:`` URIs; the style sheet is inline; nothing refers
to any URL, so the report opens offline and can be mailed as one file. Every text that
comes from a config or a table is HTML-escaped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from serialrepro.experiments.config import ExperimentConfig
from serialrepro.experiments.figures import ExperimentFigures, FigureItem
from serialrepro.experiments.results import fid_trend_sentence, fid_trends
from serialrepro.experiments.verdicts import ROUND_OFF
from serialrepro.html import escape, page, png_img

#: this report's rules on top of serialrepro.html.BASE_CSS
_CSS = """
section { margin-bottom: 2em; }
section.extension { border-left: 4px solid #c80; padding-left: 1em; }
.banner { background: #fff4e0; border: 1px solid #c80; padding: .5em 1em; }
figure { margin: 1.2em 0; } figure img { border: 1px solid #ddd; }
figcaption { font-size: .92em; color: #333; }
.claim { color: #444; } .constants { font-size: .85em; color: #444; margin: .3em 0; }
.agree { color: #060; } .disagree { color: #a00; font-weight: bold; }
.neutral { color: #555; }
table { font-size: .8em; margin: .5em 0; }
th, td { padding: 2px 6px; }
ul.verdicts li { margin: .2em 0; }
@media (max-width: 1150px) {
  figure.wide { overflow-x: auto; }
  figure.wide img { max-width: none; width: 1150px; }
}
"""

TABLE_COLUMNS = ["figure", "label", "prior", "noise", "step", "T", "sigma_start", "sigma_end",
                 "grid", "schedule", "kl_bits", "jsd_bits", "complexity_bits", "stationarity",
                 "seconds"]
#: tables with more rows than this are folded (<details>)
FOLD_ROWS = 20
#: the Figure 4 table's columns, in order (the rest of fig4.csv stays in the file)
FIG4_COLUMNS = ["dataset", "family", "sampler", "stride", "steps", "fid", "kid", "kid_std",
                "n_samples", "n_real", "train_steps", "train_seconds", "sample_seconds",
                "warning"]
#: KID's subsets hold min(1000, n_generated, n_real) samples (serialrepro.metrics.fid)
KID_MAX_SUBSET = 1000


@dataclass
class ExperimentSection:
    config: ExperimentConfig
    rows: pd.DataFrame
    figures: ExperimentFigures
    compute_seconds: float


@dataclass
class Fig4Section:
    """Outcome of the trained-model Figure 4 step."""

    status: str  # "ok", "absent", "skipped", "failed"
    message: str = ""
    table: pd.DataFrame | None = None
    figure: Path | None = None
    notes: str = ""
    seconds: float = 0.0
    preset: str = ""
    #: sample grids at the fewest and the most steps of every curve
    samples: Path | None = None


@dataclass
class ReportInputs:
    title: str
    quick: bool
    sections: list[ExperimentSection]
    resolved_config: str
    provenance: dict
    timings: dict[str, float]
    fig4: Fig4Section | None = None
    notes: list[str] = field(default_factory=list)
    #: Python warnings raised during the run: (category, message, count, first location)
    warnings: list[tuple[str, str, int, str]] = field(default_factory=list)
    #: wall time per stage (grid cells, figures, Figure 4, report), seconds
    stages: dict[str, float] = field(default_factory=dict)


_e = escape


def _img(path: Path) -> str:
    return png_img(Path(path).read_bytes(), Path(path).name)


def _verdict(ok: bool | None, extension: bool = False) -> str:
    """A visible tag: does this run's result agree with the paper's claim? Extensions ask
    the paper's question of new conditions, so their tag says whether the claim holds."""
    if ok is None:
        return ""
    if extension:
        return ('<span class="agree">[the paper\'s claim holds here]</span> ' if ok else
                '<span class="disagree">[the paper\'s claim does not hold here]</span> ')
    return ('<span class="agree">[agrees with the paper]</span> ' if ok else
            '<span class="disagree">[disagrees with the paper]</span> ')


def _num(v, digits: int = 6) -> str:
    """A table number: ``digits`` significant digits, round-off (|v| < ROUND_OFF) as 0,
    NaN as null."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "null"
    if isinstance(v, float):
        return "0" if abs(v) < ROUND_OFF else f"{v:.{digits}g}"
    return str(v)


def _png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    head = Path(path).read_bytes()[16:24]
    return int.from_bytes(head[:4], "big"), int.from_bytes(head[4:], "big")


def _figure(item: FigureItem) -> str:
    """A figure with its title and this run's finding; the claim is said once per section.
    A wide strip of panels (aspect > 3) scrolls sideways on a narrow window instead of
    shrinking its titles out of reach."""
    w, h = _png_size(item.path)
    cls = " class='wide'" if h and w / h > 3 else ""
    return (f"<figure{cls}>{_img(item.path)}<figcaption><b>{_e(item.title)}.</b> "
            f"{_e(item.finding)}</figcaption></figure>")


def _constant_columns(df: pd.DataFrame) -> list[str]:
    if len(df) < 2:
        return []
    return [c for c in df.columns if df[c].astype(str).nunique(dropna=False) == 1]


def _table(df: pd.DataFrame, columns=TABLE_COLUMNS, fold: str | None = None,
           digits: int | None = None) -> str:
    """An HTML table of ``columns``; a column with one value in every row is said once above
    it instead. ``fold``: a summary line; the table goes inside <details> when it has more
    than FOLD_ROWS rows (or always, with ``fold`` ending in '…'). ``digits``: significant
    digits of floats (default 6)."""
    cols = [c for c in columns if c in df.columns]
    df = df[cols]
    const = _constant_columns(df)
    parts = []
    # a column empty in every row (no warning anywhere, say) is left out, not announced
    said = "; ".join(f"<b>{_e(c)}</b> = {_e(_num(df[c].iloc[0]))}" for c in const
                     if str(df[c].iloc[0]).strip() not in ("", "nan", "None"))
    if said:
        parts.append(f"<p class='constants'>In every row: {said}.</p>")
    fmt = _num if digits is None else (lambda v: _num(v, digits))
    body = df.drop(columns=const).to_html(index=False, formatters={
        c: fmt for c in df.columns if c not in const}, na_rep="null", border=0, escape=True)
    parts.append(body)
    html_text = "\n".join(parts)
    if fold is not None and (len(df) > FOLD_ROWS or fold.endswith("…")):
        return f"<details><summary>{fold.removesuffix('…')}</summary>{html_text}</details>"
    return html_text


def _section(sec: ExperimentSection) -> str:
    cfg, figs = sec.config, sec.figures
    cls = "extension" if cfg.section == "extension" else "paper"
    out = [f'<section class="{cls}" id="{_e(cfg.name)}"><h3>{_e(cfg.title or cfg.name)}</h3>']
    if cfg.claim:
        label = "The paper" if cfg.section == "paper" else "Question"
        out.append(f"<p class='claim'><b>{label}:</b> {_e(cfg.claim)}</p>")
    if cfg.description:
        out.append(f"<p><b>Setting:</b> {_e(cfg.description)}</p>")
    if figs.headline:
        verdict = _verdict(figs.agrees, cfg.section == "extension")
        out.append(f"<p><b>This run:</b> {verdict}{_e(figs.headline)}</p>")
    for item in figs.items:
        out.append(_figure(item))
    out.append(_table(sec.rows, fold=(
        f"Numbers ({len(sec.rows)} rows, experiment <code>{_e(cfg.name)}</code>, "
        f"{sec.compute_seconds:.1f} s of computation)…")))
    out.append("</section>")
    return "\n".join(out)


def _kid_std_meaningless(t: pd.DataFrame) -> bool:
    """True when every KID subset is the whole sample set (subset size = n_generated =
    n_real ≤ KID_MAX_SUBSET): the subsets' spread is then float round-off, not a spread."""
    if not {"kid_std", "n_samples", "n_real"} <= set(t.columns) or t.empty:
        return False
    return bool(((t["n_samples"] == t["n_real"]) & (t["n_samples"] <= KID_MAX_SUBSET)).all())


def _fig4_trends(f: Fig4Section) -> list[dict]:
    if f.table is None or not {"steps", "fid"} <= set(f.table.columns):
        return []
    return fid_trends(f.table)


def _trend_tag(t: dict) -> str:
    if t.get("weak"):
        return '<span class="neutral">[weak trend]</span> '
    return _verdict(t["agrees"])


def _fig4_summary(f: Fig4Section | None) -> str:
    """The Summary's Figure 4 item: a verdict per sampling curve."""
    head = "<li><a href='#fig4'>Figure 4: FID against sampling steps</a>: "
    if f is None or f.status != "ok":
        line = {"absent": "not reproduced: trained-model support is absent",
                "failed": f"the run failed: {f.message if f else ''}"}.get(
            f.status if f else "skipped", "skipped (--skip-fig4)")
        return head + _e(line) + "</li>"
    trends = _fig4_trends(f)
    if not trends:
        return head + _e((f.notes.splitlines() or [""])[0]) + "</li>"
    judged = [t for t in trends if t["agrees"] is not None or t.get("weak")]
    n_ok = sum(bool(t["agrees"]) for t in judged)
    items = "".join(f"<li><code>{_e(t['curve'])}</code>: {_trend_tag(t)}"
                    f"{_e(fid_trend_sentence(t))}</li>" for t in trends)
    lead = (f"fewer steps, worse FID for {n_ok} of {len(judged)} sampling curves" if judged
            else "too few strides to judge a trend")
    return (f"{head}{lead} (preset <code>{_e(f.preset)}</code>)"
            f"<ul class='verdicts'>{items}</ul></li>")


def _fig4_table(t: pd.DataFrame) -> str:
    """FID per curve against steps (one row per step count), then every number, folded."""
    out = []
    keys = [k for k in ("dataset", "family", "sampler") if k in t.columns]
    if keys and {"steps", "fid"} <= set(t.columns):
        curves = t.assign(curve=t[keys].astype(str).agg("/".join, axis=1))
        wide = curves.pivot_table(index="steps", columns="curve", values="fid")
        wide = wide.sort_index(ascending=False).reset_index()
        wide.columns.name = None
        out.append(_table(wide, columns=list(wide.columns), digits=4, fold=(
            f"FID by number of sampling steps ({len(wide)} step counts × "
            f"{len(wide.columns) - 1} curves)")))
    cols = [c for c in FIG4_COLUMNS if c in t.columns] + [
        c for c in t.columns if c not in FIG4_COLUMNS]
    shown = t[cols]
    note = ""
    if _kid_std_meaningless(shown):
        top = float(shown["kid_std"].abs().max())
        shown = shown.drop(columns="kid_std")
        note = ("<p class='constants'><b>kid_std</b> is left out: every KID subset held all "
                f"{int(t['n_samples'].iloc[0])} generated and real samples (subset size = n ≤ "
                f"{KID_MAX_SUBSET}), so the subsets' spread (at most {top:.1g}) is float "
                "round-off, not an uncertainty; it stays in <code>fig4.csv</code>.</p>")
    out.append(note + _table(shown, columns=list(shown.columns), fold=(
        f"Every Figure 4 number ({len(t)} rows; also <code>fig4/fig4.csv</code>)…")))
    return "\n".join(out)


def _fig4(f: Fig4Section | None) -> str:
    out = ["<section id='fig4'><h2>Figure 4: a trained diffusion model, FID against sampling "
           "steps</h2>",
           "<p class='claim'><b>The paper:</b> a DDPM trained on MNIST with T = 1000 and "
           "sampled with stride k (⌊1000/k⌋ steps) gets worse FID with fewer steps (their "
           "FIDs: 37.5 at 500 steps to 227.0 at 50 steps).</p>"]
    if f is None or f.status == "skipped":
        out.append("<p><b>This run:</b> skipped (<code>--skip-fig4</code>).</p>")
    elif f.status == "absent":
        out.append("<p><b>This run:</b> trained-model support is absent from this "
                   f"installation, so Figure 4 was not reproduced. {_e(f.message)}</p>")
    elif f.status == "failed":
        out.append(f"<p class='disagree'><b>This run:</b> the Figure 4 run failed: "
                   f"{_e(f.message)}</p>")
    else:
        trends = _fig4_trends(f)
        spent = f"{f.seconds:.0f} s in this run"
        if f.table is not None and "sample_seconds" in f.table.columns:
            spent += (f"; sampling its {len(f.table)} cells took "
                      f"{f.table['sample_seconds'].sum():.0f} s when they ran, and finished "
                      "cells are reused")
        out.append(f"<p><b>This run</b> (preset <code>{_e(f.preset)}</code>, {spent}):</p>")
        curve_lines = {f"{t['curve']}:" for t in trends}
        if trends:
            out.append("<ul class='verdicts'>" + "".join(
                f"<li><code>{_e(t['curve'])}</code>: {_trend_tag(t)}"
                f"{_e(fid_trend_sentence(t))}</li>" for t in trends) + "</ul>")
        notes = [ln for ln in f.notes.splitlines() if ln.strip()
                 and not any(ln.startswith(c) for c in curve_lines)
                 and not ln.startswith("warning: ")]
        if notes:
            out.append("<ul>" + "".join(f"<li>{_e(ln)}</li>" for ln in notes) + "</ul>")
        if f.figure is not None and Path(f.figure).is_file():
            out.append(f"<figure>{_img(f.figure)}<figcaption><b>FID against the number of "
                       "sampling steps</b>, one curve per model and sampler; dotted: the FID of "
                       "real training images against the held-out ones at the same sample count "
                       "(the best a model can score); dashed grey, right axis: the paper's "
                       "MNIST FIDs.</figcaption></figure>")
        if f.samples is not None and Path(f.samples).is_file():
            out.append(f"<figure>{_img(f.samples)}<figcaption><b>Samples at the most and the "
                       "fewest sampling steps</b> of every curve (the first 64 samples of each "
                       "cell; the same seed at every stride, so the grids start from the same "
                       "noise).</figcaption></figure>")
        if f.table is not None:
            out.append(_fig4_table(f.table))
    out.append("</section>")
    return "\n".join(out)


def _warnings(ws: list[tuple[str, str, int, str]]) -> str:
    if not ws:
        return "<p>No Python warnings were raised during the run.</p>"
    rows = "".join(f"<tr><td style='text-align:left'>{_e(cat)}</td><td>{n}</td>"
                   f"<td style='text-align:left'>{_e(msg)}</td>"
                   f"<td style='text-align:left'><code>{_e(where)}</code></td></tr>"
                   for cat, msg, n, where in ws)
    return ("<p>Raised by the libraries during the run and kept out of the terminal; also in "
            "<code>run.log</code>.</p><table><tr><th>category</th><th>times</th>"
            f"<th>message</th><th>first raised at</th></tr>{rows}</table>")


def _kv_table(d: dict) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td style='text-align:left'>{_e(v)}</td></tr>"
                   for k, v in d.items())
    return f"<table>{rows}</table>"


def render_report(inp: ReportInputs) -> str:
    paper = [s for s in inp.sections if s.config.section == "paper"]
    ext = [s for s in inp.sections if s.config.section == "extension"]
    other = [s for s in inp.sections if s.config.section == "custom"]
    parts = [
        f"<h1>{_e(inp.title)}</h1>",
        "<p>Source: Marjieh, Sucholutsky, Langlois, Jacoby and Griffiths, <i>Analyzing "
        "Diffusion as Serial Reproduction</i>, ICML 2023 (arXiv 2209.14821). Simulations "
        "run the exact optimal process on a grid (<code>serialrepro.grid</code>).</p>",
    ]
    if inp.quick:
        full = [f"Figure {s.config.figure}" if s.config.figure else s.config.name
                for s in inp.sections if s.config.quick is None]
        except_ = (f", except {' and '.join(full)}, which run{'s' if len(full) == 1 else ''} "
                   "in full" if full else "")
        parts.append("<p class='banner'><b>Quick run</b> (<code>--quick</code>): smaller grids "
                     f"and fewer conditions than the paper{_e(except_)}. Run <code>serialrepro "
                     "reproduce</code> for the full report.</p>")
    golden = [s for s in inp.sections if s.config.reference == "golden"]
    if golden:
        parts.append("<p><b>Golden check</b> (docs/design.md §2: the authors' published code): "
                     + ", ".join(f"<a href='#{_e(s.config.name)}'>{_e(s.config.name)}</a> "
                                 f"{_verdict(s.figures.agrees).strip()}" for s in golden)
                     + ".</p>")
    parts.append("<h2>Summary</h2><ul>")
    for s in inp.sections:
        if s.figures.headline:
            is_ext = s.config.section == "extension"
            tag = " (extension)" if is_ext else ""
            parts.append(f"<li><a href='#{_e(s.config.name)}'>{_e(s.config.title)}</a>{tag}: "
                         f"{_verdict(s.figures.agrees, is_ext)}"
                         f"{_e(s.figures.brief or s.figures.headline)}</li>")
    if inp.fig4 is not None:
        parts.append(_fig4_summary(inp.fig4))
    parts.append("</ul>")
    if inp.stages:
        split = ", ".join(f"{k} {v:.1f} s" for k, v in inp.stages.items() if k != "total")
        parts.append(f"<p>Wall time {inp.stages.get('total', 0.0):.1f} s: {_e(split)}.</p>")
    else:
        parts.append(f"<p>Total wall time {inp.timings.get('total', 0.0):.1f} s.</p>")
    if inp.warnings:
        n = sum(w[2] for w in inp.warnings)
        parts.append(f"<p>{len(inp.warnings)} distinct Python warning(s) ({n} in all) were "
                     "raised during the run: see <a href='#warnings'>Warnings</a>.</p>")
    for note in inp.notes:
        parts.append(f"<p>{_e(note)}</p>")
    if paper:
        parts.append("<h2>The paper's simulations</h2>")
        parts.extend(_section(s) for s in paper)
    if other:
        parts.append("<h2>Experiments</h2>")
        parts.extend(_section(s) for s in other)
    if inp.fig4 is not None or paper:
        parts.append(_fig4(inp.fig4))
    if ext:
        parts.append("<h2 id='extensions'>Extensions: past the paper</h2>"
                     "<p class='banner'>Everything in this section goes beyond the paper: "
                     "these conditions were not run by its authors, and the questions are "
                     "ours.</p>")
        parts.extend(_section(s) for s in ext)
    n_lines = inp.resolved_config.count("\n")
    parts.append("<h2>Resolved configuration</h2>"
                 "<details><summary>The experiments exactly as they ran (defaults filled in, "
                 f"ranges expanded; {n_lines} lines of YAML, also in "
                 "<code>config.resolved.yaml</code> beside this report)</summary>"
                 f"<pre>{_e(inp.resolved_config)}</pre></details>")
    parts.append("<h2 id='warnings'>Warnings</h2>" + _warnings(inp.warnings))
    run_keys = {k: v for k, v in inp.provenance.items()
                if not k.startswith(("machine: ", "version: "))}
    rest = {k: v for k, v in inp.provenance.items() if k not in run_keys}
    parts.append("<h2>Provenance</h2>" + _kv_table(run_keys))
    if rest:
        parts.append(f"<details><summary>Machine and package versions ({len(rest)} entries)"
                     f"</summary>{_kv_table(rest)}</details>")
    if inp.stages:
        parts.append("<h3>Time by stage (seconds, wall)</h3>" + _kv_table(
            {k: f"{v:.1f}" for k, v in inp.stages.items()}))
    parts.append("<details><summary>Timings in detail (seconds)</summary>" + _kv_table(
        {k: f"{v:.2f}" for k, v in inp.timings.items()}) + "</details>")
    return page(inp.title, parts, css=_CSS)
