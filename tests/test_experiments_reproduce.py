"""``serialrepro reproduce --quick`` end to end, and the Figure 4 wiring."""

from __future__ import annotations

import base64
import re
import sys
import types
from html.parser import HTMLParser

import pandas as pd
import pytest
from typer.testing import CliRunner

from golden_values import GOLDEN  # tests/ helper module
from serialrepro.experiments.config import parse_config
from serialrepro.experiments.pipeline import run_experiments

REQUIRED_COLUMNS = [
    "experiment", "figure", "prior", "noise", "step", "T", "sigma_start", "sigma_end", "grid",
    "kl_bits", "jsd_bits", "complexity_bits", "stationarity", "seconds",
]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Collector(HTMLParser):
    """Every start tag with its attributes, and the text."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.stack: list[str] = []
        self.mismatched = 0

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in ("img", "meta", "br", "hr", "input", "link"):
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()
        else:
            self.mismatched += 1

    def handle_data(self, data):
        self.text.append(data)


def check_self_contained(html_text: str) -> _Collector:
    """The report parses, its tags are balanced, and nothing in it points outside."""
    parser = _Collector()
    parser.feed(html_text)
    parser.close()
    assert parser.mismatched == 0 and parser.stack == []
    lowered = html_text.lower()
    for needle in ("http://", "https://", "//cdn", "url(", "@import"):
        assert needle not in lowered, needle
    for tag, attrs in parser.tags:
        assert tag not in ("link", "script", "iframe", "object", "embed"), tag
        if "src" in attrs:
            assert attrs["src"].startswith("data:image/png;base64,"), attrs["src"][:60]
            assert base64.b64decode(attrs["src"].split(",", 1)[1]).startswith(PNG_MAGIC)
        if "href" in attrs:
            assert attrs["href"].startswith("#"), attrs["href"]
    return parser


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    from serialrepro.cli import app

    out = tmp_path_factory.mktemp("reproduce") / "run"
    result = CliRunner().invoke(app, ["reproduce", "--quick", "--out", str(out), "--skip-fig4",
                                      "--no-progress"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out, result.output


def test_quick_writes_every_output(quick_run):
    out, output = quick_run
    for name in ("scores.parquet", "scores.csv", "report.html", "config.resolved.yaml",
                 "run.json"):
        assert (out / name).is_file(), name
    pngs = list((out / "figures").glob("*.png"))
    assert len(pngs) >= 15
    assert all(p.read_bytes().startswith(PNG_MAGIC) for p in pngs)
    assert f"report: {out / 'report.html'}" in output


def test_quick_table_has_the_figures_rows(quick_run):
    out, _ = quick_run
    table = pd.read_parquet(out / "scores.parquet")
    assert list(table.columns[: len(REQUIRED_COLUMNS)]) == REQUIRED_COLUMNS
    csv = pd.read_csv(out / "scores.csv")
    assert list(csv.columns) == list(table.columns) and len(csv) == len(table)
    numeric = [c for c in table.columns if table[c].dtype.kind in "fi"]
    pd.testing.assert_frame_equal(csv[numeric], table[numeric], check_exact=True)
    by = table.groupby("experiment")
    assert set(by.groups) == {"fig2", "fig3", "figS2", "figS3-S4", "figS5", "ext-families",
                              "ext-schedules", "ext-resolution", "ext-optimal"}
    fig2 = table[table["experiment"] == "fig2"].set_index("figure")
    assert fig2.loc[["2A-B", "2C", "2D", "2E"], "noise"].tolist() == [
        "gaussian", "bimodal", "fade-uniform", "fade-fixed"]
    assert set(table.loc[table["experiment"] == "figS2", "step"]) == {"serial", "ancestral"}
    s3 = table[table["experiment"] == "figS3-S4"]
    assert sorted(zip(s3["noise"], s3["T"], strict=True)) == [
        ("bimodal", 10), ("fade-fixed", 10), ("fade-uniform", 10), ("gaussian", 10),
        ("gaussian", 100)]
    assert (s3["sigma_start"] == s3["sigma_end"]).all()  # constant bad noise
    assert sorted(table.loc[table["experiment"] == "figS5", "T"]) == [2, 3, 6, 12, 24, 48, 100]
    # every kl is a finite, non-negative number of bits (but where an optimal-schedule
    # cell's constraint is infeasible: it says why instead); seconds are recorded
    run = table["infeasible"].fillna("").eq("") if "infeasible" in table else True
    assert (table.loc[run, "kl_bits"] >= 0).all() and table.loc[run, "kl_bits"].notna().all()
    assert table.loc[~run, "kl_bits"].isna().all() if "infeasible" in table else True
    assert (table["seconds"] > 0).all()


def test_quick_figure3_rows_match_the_golden_values(quick_run):
    out, _ = quick_run
    table = pd.read_parquet(out / "scores.parquet")
    fig3 = table[table["experiment"] == "fig3"].set_index("T")
    assert sorted(fig3.index) == sorted(GOLDEN)
    assert set(fig3["grid"]) == {"paper:0.04"} and set(fig3["noise"]) == {"gaussian"}
    for T, values in GOLDEN.items():
        got = fig3.loc[T, ["kl_bits", "jsd_bits", "complexity_bits", "stationarity"]]
        assert got.tolist() == pytest.approx(values, abs=1e-5), T


def test_quick_report_is_self_contained_and_says_what_it_found(quick_run):
    out, _ = quick_run
    html_text = (out / "report.html").read_text(encoding="utf-8")
    parser = check_self_contained(html_text)
    images = [a for t, a in parser.tags if t == "img"]
    assert len(images) == len(list((out / "figures").glob("*.png")))
    text = " ".join(parser.text)
    assert "golden values are reproduced to 1e-05" in text
    assert "kl falls from 0.4492 at T=2 to 0.1279 at T=100" in text
    assert "Extensions: past the paper" in text
    assert "Figure 4" in text and "skipped" in text
    assert "Resolved configuration" in text and "version: torch" in text


def _tiny_config():
    return parse_config({
        "name": "tiny", "title": "tiny sweep", "sweeps": [{
            "T": [2, 4], "schedule": {"kind": "linear", "start": 0.01, "end": 0.05},
            "grid": "paper:0.1"}]})


def test_figure4_section_uses_its_runner(tmp_path):
    """The pipeline calls its Figure 4 runner with the preset of the mode and embeds its
    table, figure and notes (a fast stand-in, passed through the seam, replaces training)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    calls = []

    def fake_run_fig4(out_dir, *, preset, seed, progress):
        calls.append((out_dir, preset, seed))
        out_dir.mkdir(parents=True, exist_ok=True)
        fig, ax = plt.subplots()
        ax.plot([50, 500], [227.0, 37.5])
        path = out_dir / "fid.png"
        fig.savefig(path)
        plt.close(fig)
        return types.SimpleNamespace(
            table=pd.DataFrame({"steps": [50, 500], "fid": [227.0, 37.5]}), figure=path,
            notes="FID rises from 37.5 at 500 steps to 227 at 50 steps", samples=None)

    outcome = run_experiments([_tiny_config()], tmp_path / "a", quick=True, progress=False,
                              fig4=True, seed=7, fig4_runner=fake_run_fig4)
    assert calls == [(tmp_path / "a" / "fig4", "quick", 7)]
    html_text = outcome.report_path.read_text(encoding="utf-8")
    check_self_contained(html_text)
    assert "FID rises from 37.5 at 500 steps to 227 at 50 steps" in html_text
    # summary: two strides are too few for a verdict, and it says so
    assert "Figure 4: FID against sampling steps</a>: too few strides to judge" in html_text
    assert html_text.count("data:image/png;base64,") == 2  # tiny's figure + Figure 4's
    assert "<td>227</td>" in html_text

    run_experiments([_tiny_config()], tmp_path / "b", quick=False, progress=False, fig4=True,
                    fig4_runner=fake_run_fig4)
    assert calls[-1][1] == "digits-cpu"


def test_figure4_section_says_plainly_when_support_is_absent(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "serialrepro.models.fig4", None)  # import fails
    outcome = run_experiments([_tiny_config()], tmp_path / "a", progress=False, fig4=True)
    html_text = outcome.report_path.read_text(encoding="utf-8")
    assert "trained-model support is absent from this installation" in html_text

    def broken(out_dir, *, preset, seed, progress):
        raise RuntimeError("no MNIST files")

    outcome = run_experiments([_tiny_config()], tmp_path / "b", progress=False, fig4=True,
                              fig4_runner=broken)
    html_text = outcome.report_path.read_text(encoding="utf-8")
    assert "the Figure 4 run failed: RuntimeError: no MNIST files" in html_text


def test_captions_are_computed_from_the_numbers_and_flag_disagreement(tmp_path):
    """Synthetic tables: a falling and a rising kl give opposite verdicts and sentences; the
    figure is captioned with the verdict's finding."""
    from serialrepro.experiments.figures import experiment_figures

    def table(kl, complexity, grid="torus:16"):
        Ts = [2, 6, 24]
        return pd.DataFrame({
            "experiment": "tiny", "figure": "", "prior": "swiss-roll", "noise": "gaussian",
            "step": "serial", "T": Ts, "sigma_start": 0.01, "sigma_end": 0.05, "grid": grid,
            "kl_bits": kl, "jsd_bits": 0.0, "complexity_bits": complexity,
            "stationarity": 0.0, "seconds": 1.0, "label": "", "schedule": "linear",
            "sigma_sq_sum": 0.0, "seed": 0, "backend": "fft", "cell": ["a", "b", "c"]})

    cfg = _tiny_config()
    falling = table([0.5, 0.2, 0.3], [0.6, 0.1, 0.01])
    figs = experiment_figures(cfg, falling, falling, None, tmp_path)
    assert figs.agrees is True
    assert "kl falls from 0.5 at T=2 to 0.3 at T=24 (lowest 0.2 at T=6)" in figs.items[0].finding
    assert "Spearman ρ(kl, complexity) = 0.5" in figs.items[0].finding
    rising = table([0.1, 0.2, 0.4], [0.6, 0.1, 0.01])
    figs = experiment_figures(cfg, rising, rising, None, tmp_path)
    assert figs.agrees is False
    assert "kl rises from 0.1 at T=2 to 0.4 at T=24" in figs.items[0].finding
    assert "Spearman ρ(kl, complexity) = -1" in figs.items[0].finding
    assert figs.items[0].path.read_bytes().startswith(PNG_MAGIC)


# -- the report edited like a supplement (issue: long tables, constants, round-off) ------

class _Tables(HTMLParser):
    """Every <table>: whether it sits inside <details>, its header and body cell texts."""

    def __init__(self):
        super().__init__()
        self.tables: list[dict] = []
        self.stack: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append({"folded": "details" in self.stack, "head": [], "rows": []})
        elif tag == "tr" and self.tables:
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th") and self.tables:
            self._cell = []
        if tag not in ("img", "meta", "br"):
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self.tables:
            t = self.tables[-1]
            where = "head" if "thead" in self.stack else "rows"
            if where == "head":
                t["head"].append("".join(self._cell).strip())
            else:
                t["rows"][-1].append("".join(self._cell).strip())
            self._cell = None
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def report_tables(html_text: str) -> list[dict]:
    p = _Tables()
    p.feed(html_text)
    for t in p.tables:
        t["rows"] = [r for r in t["rows"] if r]
    return p.tables


def check_edited(html_text: str) -> None:
    """Tables over FOLD_ROWS rows are folded; no data table repeats one value in a column;
    no round-off printed as a number."""
    import re

    from serialrepro.experiments.report import FOLD_ROWS

    tables = report_tables(html_text)
    assert tables
    for t in tables:
        if len(t["rows"]) > FOLD_ROWS:
            assert t["folded"], t["head"]
        if t["head"] and len(t["rows"]) >= 2:  # a data table (pandas writes a <thead>)
            for j, name in enumerate(t["head"]):
                column = {r[j] for r in t["rows"] if j < len(r)}
                assert len(column) > 1, f"column {name!r} is the same in every row"
    assert not re.search(r"-\d(\.\d+)?e-(1[2-9]|[2-9]\d)\b", html_text)


def test_quick_report_is_edited_like_a_supplement(quick_run):
    out, _ = quick_run
    html_text = (out / "report.html").read_text(encoding="utf-8")
    check_edited(html_text)
    # ext-schedules has 24 rows: its table is folded; a folded table's constants are said once
    assert "In every row:" in html_text
    # the claim is said once per section, not under each of fig2's four panels
    from serialrepro.experiments.catalog import reproduce_configs

    fig2 = next(c for c in reproduce_configs() if c.name == "fig2")
    assert html_text.count(_html_escape(fig2.claim)) == 1
    # the resolved config is folded
    assert "<details><summary>The experiments exactly as they ran" in html_text


def _html_escape(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def test_quick_run_says_where_it_writes_and_time_by_stage(quick_run):
    out, output = quick_run
    lines = output.splitlines()
    assert lines[0].startswith(f"writing to {out}"), lines[0]
    stage = next(ln for ln in lines if ln.startswith("time by stage:"))
    for name in ("grid cells", "figures", "report", "total"):
        assert name in stage
    assert "Figure 4" not in stage  # skipped: no Figure 4 stage
    # the cells line reports the cells' stage, not the whole run
    cells_line = next(ln for ln in lines if " cells (" in ln and " reused, " in ln)
    cells_s = float(re.search(r"in ([0-9.]+) s$", cells_line).group(1))
    grid_s = float(re.search(r"grid cells ([0-9.]+) s", stage).group(1))
    assert abs(cells_s - grid_s) <= 0.051, (cells_line, stage)
    # output holds stdout and stderr: no Python warning reached the terminal
    assert "Warning:" not in output and "warnings.warn" not in output
    assert (out / "run.log").read_text().count("writing to") == 1


def test_numbers_print_round_off_as_zero():
    from serialrepro.experiments.report import _num
    from serialrepro.experiments.verdicts import fmt

    assert _num(-3.364e-15) == "0" and fmt(-1.137e-14) == "0"
    assert _num(2.5e-7) == "2.5e-07" and fmt(0.07642) == "0.07642"
    assert _num(float("nan")) == "null"


def test_constant_columns_are_said_once_and_long_tables_fold():
    from serialrepro.experiments.report import FOLD_ROWS, _table

    df = pd.DataFrame({"T": range(FOLD_ROWS + 1), "noise": "gaussian",
                       "kl_bits": [0.1 * i for i in range(FOLD_ROWS + 1)]})
    html_text = _table(df, columns=list(df.columns), fold="numbers")
    assert html_text.startswith("<details><summary>numbers</summary>")
    assert "In every row: <b>noise</b> = gaussian." in html_text
    assert html_text.count("gaussian") == 1
    short = _table(df.head(3), columns=list(df.columns), fold="numbers")
    assert "<details>" not in short


def _fake_fig4(tmp_path, plt, warn: bool = False):
    """A stand-in for models.fig4.run_fig4: two curves, one whose FID rises as the steps
    fall and one flat; an 80-row-like long table with constant columns."""
    import warnings

    def run_fig4(out_dir, *, preset, seed, progress):
        if warn:
            warnings.warn("a library warning that must not reach the terminal", stacklevel=1)
            warnings.warn("a library warning that must not reach the terminal", stacklevel=1)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for name in ("fid.png", "samples.png"):
            fig, ax = plt.subplots()
            ax.plot([1, 2])
            fig.savefig(out_dir / name)
            plt.close(fig)
            paths.append(out_dir / name)
        steps = [1000 // k for k in range(1, 13)]
        rising = [2.0 + 10.0 * k for k in range(12)]
        flat = [2.0 + 0.01 * ((k * 7) % 5) for k in range(12)]
        rows = [{"dataset": "digits", "family": "gaussian", "sampler": s, "stride": k + 1,
                 "steps": st, "fid": f[k], "kid": 0.01 + 0.001 * k + (s == "ddpm") * 1e-4,
                 "kid_std": 2e-7, "n_samples": 539, "n_real": 539,
                 "warning": "FID from 539 samples is noisy"}
                for s, f in (("ddpm-naive", rising), ("ddpm", flat))
                for k, st in enumerate(steps)]
        return types.SimpleNamespace(table=pd.DataFrame(rows), figure=paths[0],
                                     samples=paths[1], notes="digits: noise floor FID 2.0")

    return run_fig4


def test_figure4_verdicts_in_summary_samples_embedded_and_table_edited(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outcome = run_experiments([_tiny_config()], tmp_path / "a", quick=True, progress=False,
                              fig4=True, fig4_runner=_fake_fig4(tmp_path, plt))
    html_text = outcome.report_path.read_text(encoding="utf-8")
    check_self_contained(html_text)
    check_edited(html_text)
    summary = html_text.split("<h2>Summary</h2>", 1)[1].split("<h2", 1)[0]
    assert "fewer steps, worse FID for 1 of 2 sampling curves" in summary
    naive = summary.split("digits/gaussian/ddpm-naive</code>: ", 1)[1]
    assert naive.startswith('<span class="agree">[agrees with the paper]</span> FID rises')
    flat = summary.split("digits/gaussian/ddpm</code>: ", 1)[1]
    assert flat.startswith('<span class="disagree">[disagrees with the paper]</span>')
    assert html_text.count("data:image/png;base64,") == 3  # tiny's figure, FID, samples
    assert "Samples at the most and the fewest sampling steps" in html_text
    # the FID warning and the sample counts are said once, kid_std (round-off) left out
    assert html_text.count("FID from 539 samples is noisy") == 1
    assert "<b>kid_std</b> is left out" in html_text and "<th>kid_std</th>" not in html_text
    assert "Figure 4" in outcome.stages and outcome.stages["grid cells"] < outcome.stages[
        "total"] - outcome.stages["Figure 4"] + 1e-9


def test_warnings_go_to_the_log_and_report_not_the_terminal(tmp_path, capfd):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = tmp_path / "a"
    outcome = run_experiments([_tiny_config()], out, quick=True, progress=True, fig4=True,
                              fig4_runner=_fake_fig4(tmp_path, plt, warn=True))
    err = capfd.readouterr().err
    assert "must not reach the terminal" not in err
    assert err.startswith(f"writing to {out}")
    assert "time by stage:" in err and "Figure 4" in err
    log = (out / "run.log").read_text()
    assert log.count("warning UserWarning at ") == 1  # logged once, counted
    assert "2× UserWarning: a library warning that must not reach the terminal" in log
    html_text = outcome.report_path.read_text(encoding="utf-8")
    assert "a library warning that must not reach the terminal" in html_text
    assert "1 distinct Python warning(s) (2 in all)" in html_text


def test_sample_tiles_have_gaps_between_them():
    import torch

    from serialrepro.models.fig4 import tile_images

    x = -torch.ones(9, 1, 4, 4)  # black tiles
    grid = tile_images(x, gap=1)[..., 0]
    assert grid.shape == (3 * 4 + 2, 3 * 4 + 2)
    assert (grid[4, :] == 1).all() and (grid[:, 9] == 1).all()  # white gaps
    assert (grid[:4, :4] == 0).all() and (grid[10:, 10:] == 0).all()  # tiles stay black


def test_fid_trends_judge_direction_and_size():
    from serialrepro.experiments.results import fid_trends

    steps = [1000, 500, 250, 100, 50]
    t = pd.DataFrame({"sampler": ["big"] * 5 + ["small"] * 5 + ["down"] * 5,
                      "steps": steps * 3,
                      "fid": [2, 3, 5, 20, 50] + [2.0, 2.05, 2.1, 2.15, 2.2] + [50, 20, 5, 3, 2]})
    got = {r["curve"]: r for r in fid_trends(t)}
    assert got["big"]["agrees"] is True and got["big"]["rho"] == pytest.approx(-1)
    assert got["small"]["agrees"] is None and got["small"]["weak"]  # +10 %: too small
    assert "rises only 10%" in got["small"]["verdict"]
    assert got["down"]["agrees"] is False and got["down"]["verdict"] == "FID falls as steps fall"
    assert fid_trends(t.head(2))[0]["agrees"] is None  # two strides: not judged
