"""A self-contained HTML report: one file, images embedded, no network.

Images are PNGs embedded as ``data:`` URIs; the style sheet is inline; nothing refers
to any URL, so the report opens offline and can be mailed as one file. Every text that
comes from a config or a table is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from serialrepro.experiments.config import ExperimentConfig
from serialrepro.experiments.figures import ExperimentFigures, FigureItem

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; }
section.extension { border-left: 4px solid #c80; padding-left: 1em; }
.banner { background: #fff4e0; border: 1px solid #c80; padding: .5em 1em; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: .92em; color: #333; }
.notes { white-space: pre-line; } .claim { color: #444; }
.agree { color: #060; } .disagree { color: #a00; font-weight: bold; }
table { border-collapse: collapse; font-size: .8em; margin: .5em 0; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #f3f3f3; } pre { background: #f7f7f7; padding: .8em; overflow-x: auto;
font-size: .8em; } details { margin: .5em 0; }
"""

TABLE_COLUMNS = ["figure", "label", "prior", "noise", "step", "T", "sigma_start", "sigma_end",
                 "grid", "schedule", "kl_bits", "jsd_bits", "complexity_bits", "stationarity",
                 "seconds"]


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


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{_e(Path(path).name)}" src="data:image/png;base64,{data}">'


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


def _figure(item: FigureItem, claim: str) -> str:
    return (f"<figure>{_img(item.path)}<figcaption><b>{_e(item.title)}.</b> "
            f"<span class='claim'><i>Paper/question:</i> {_e(claim)}</span> "
            f"<i>This run:</i> {_e(item.finding)}</figcaption></figure>")


def _table(df: pd.DataFrame, columns=TABLE_COLUMNS) -> str:
    cols = [c for c in columns if c in df.columns]
    return df[cols].to_html(index=False, float_format=lambda v: f"{v:.6g}", na_rep="null",
                            border=0, escape=True)


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
        out.append(_figure(item, cfg.claim))
    out.append(f"<details><summary>Numbers ({len(sec.rows)} rows, experiment "
               f"<code>{_e(cfg.name)}</code>, {sec.compute_seconds:.1f} s of computation)"
               f"</summary>{_table(sec.rows)}</details></section>")
    return "\n".join(out)


def _fig4(f: Fig4Section | None) -> str:
    out = ["<h2 id='fig4'>Figure 4: a trained diffusion model, FID against sampling steps</h2>",
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
        out.append(f"<p class='notes'><b>This run</b> (preset <code>{_e(f.preset)}</code>, "
                   f"{f.seconds:.1f} s): {_e(f.notes)}</p>")
        if f.figure is not None and Path(f.figure).is_file():
            out.append(f"<figure>{_img(f.figure)}<figcaption>Figure 4 reproduction (FID "
                       "against the number of sampling steps; notes above).</figcaption></figure>")
        if f.table is not None:
            out.append(f.table.to_html(index=False, float_format=lambda v: f"{v:.6g}",
                                       border=0, escape=True))
    return "\n".join(out)


def _kv_table(d: dict) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td style='text-align:left'>{_e(v)}</td></tr>"
                   for k, v in d.items())
    return f"<table>{rows}</table>"


def render_report(inp: ReportInputs) -> str:
    paper = [s for s in inp.sections if s.config.section == "paper"]
    ext = [s for s in inp.sections if s.config.section == "extension"]
    other = [s for s in inp.sections if s.config.section == "custom"]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(inp.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(inp.title)}</h1>",
        "<p>Source: Marjieh, Sucholutsky, Langlois, Jacoby and Griffiths, <i>Analyzing "
        "Diffusion as Serial Reproduction</i>, ICML 2023 (arXiv 2209.14821). Simulations "
        "run the exact optimal process on a grid (<code>serialrepro.grid</code>).</p>",
    ]
    if inp.quick:
        parts.append("<p class='banner'><b>Quick run</b> (<code>--quick</code>): smaller grids "
                     "and fewer conditions than the paper, except Figure 3, which runs in full. "
                     "Run <code>serialrepro reproduce</code> for the full report.</p>")
    parts.append("<h2>Summary</h2><ul>")
    for s in inp.sections:
        if s.figures.headline:
            is_ext = s.config.section == "extension"
            tag = " (extension)" if is_ext else ""
            parts.append(f"<li><a href='#{_e(s.config.name)}'>{_e(s.config.title)}</a>{tag}: "
                         f"{_verdict(s.figures.agrees, is_ext)}{_e(s.figures.headline)}</li>")
    if inp.fig4 is not None:
        f = inp.fig4
        line = {"skipped": "skipped (--skip-fig4)",
                "absent": "not reproduced: trained-model support is absent",
                "failed": f"the run failed: {f.message}"}.get(
            f.status, (f.notes.splitlines() or [""])[0])
        parts.append(f"<li><a href='#fig4'>Figure 4: FID against sampling steps</a>: "
                     f"{_e(line)}</li>")
    total = inp.timings.get("total", 0.0)
    parts.append(f"</ul><p>Total wall time {total:.1f} s.</p>")
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
    parts.append("<h2>Resolved configuration</h2>"
                 "<p>The experiments exactly as they ran (defaults filled in, ranges "
                 "expanded); also in <code>config.resolved.yaml</code> beside this report.</p>"
                 f"<pre>{_e(inp.resolved_config)}</pre>")
    parts.append("<h2>Provenance</h2>" + _kv_table(inp.provenance))
    parts.append("<h3>Timings (seconds)</h3>" + _kv_table(
        {k: f"{v:.2f}" for k, v in inp.timings.items()}))
    parts.append("</body></html>")
    return "\n".join(parts)
