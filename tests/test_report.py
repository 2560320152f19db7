"""The HTML Model Analysis Table: built from two briefly trained runs, opened in headless
Chromium; every figure renders, no JavaScript error, nothing fetched from the network."""

import argparse
import re
from pathlib import Path

import pytest

from induction_lens.cli import report as cli_report
from induction_lens.hub import Hub
from induction_lens.runs.evaluate import EvalSettings
from induction_lens.viz.report import ROWS, ReportError, build_report

RUNS = ("tiny-1l", "tiny-2l")
SETTINGS = EvalSettings(n_examples=32)
"""A small evaluation set: the test checks the page, not the science."""


def _train_tiny(root: Path) -> Hub:
    """Two tiny runs (1 and 2 layers, 60 steps, a checkpoint every 10): seconds on a CPU.

    The context is the laptop presets' 128 tokens, so that the default head-evaluator inputs
    (1 + 25 x 4 tokens) fit and the command line's defaults work on these runs.
    """
    from induction_lens.config import ModelSpec, TrainConfig
    from induction_lens.train import train

    for run, n_layers in zip(RUNS, (1, 2), strict=True):
        spec = ModelSpec(n_layers=n_layers, d_model=32, n_heads=4, d_head=8, n_ctx=128,
                         d_vocab=64)
        train(spec, hub=root, run=run, progress=False, device="cpu",
              train=TrainConfig(steps=60, batch_size=16, lr=1e-2, warmup_steps=5,
                                checkpoint_every=10))
    return Hub(root)


@pytest.fixture(scope="module")
def tiny_hub(tmp_path_factory) -> Hub:
    """A hub of two tiny runs that this module may write evaluations into."""
    return _train_tiny(tmp_path_factory.mktemp("report_hub"))


@pytest.fixture(scope="module")
def built(tiny_hub: Hub, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    return build_report(tiny_hub, list(RUNS), out, settings=SETTINGS, ablations="yes")


def _eval_files(hub: Hub) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for run in RUNS
            for p in sorted((hub.run_dir(run) / "evals").glob("*.parquet"))}


@pytest.mark.slow
def test_report_is_one_self_contained_page_with_every_row(built, tiny_hub):
    page = built.path.read_text(encoding="utf-8")
    assert built.runs == list(RUNS)
    assert built.rows == [r.key for r in ROWS]  # ablations were requested: every row
    # one cell per row and run: a figure, or a written note saying why there is none
    assert built.figures + len(built.notes) == len(ROWS) * len(RUNS)
    assert page.count('class="plotly-graph-div"') == built.figures
    # the one-layer model has no QK trace: its cell says so
    notes = dict(n.split(": ", 1) for n in built.notes)
    assert "more than one layer deep" in notes["qk/tiny-1l"]
    assert all(notes.values())
    # offline: plotly.js is inline, once; no script is loaded from anywhere
    assert not re.search(r"<script[^>]+src=", page)
    assert page.count("Plotly.newPlot(") == built.figures
    assert len(re.findall(r"\* plotly\.js v\d", page)) == 1  # the bundle's banner, once
    for row in ROWS:
        assert row.title.replace('"', "&quot;") in page
    assert "Model Analysis Table" in page


@pytest.mark.slow
def test_second_build_reuses_the_cached_evaluations(built, tiny_hub, tmp_path):
    before = _eval_files(tiny_hub)
    assert {p.name for p in before} >= {"losses.parquet", "prefix_matching.parquet",
                                        "qk_trace.parquet", "ablation_pattern.parquet"}
    again = build_report(tiny_hub, list(RUNS), tmp_path / "again.html", settings=SETTINGS,
                         ablations="yes")
    assert _eval_files(tiny_hub) == before  # nothing re-evaluated, nothing rewritten
    assert again.figures == built.figures


@pytest.mark.slow
def test_report_renders_in_headless_chromium(built, tmp_path):
    from tests.browser import Browser, chromium_or_skip, format_messages

    chromium_or_skip()
    with Browser(width=1400, height=900) as browser:
        page = browser.load(built.path.resolve().as_uri(), wait_for=".plotly-graph-div",
                            settle=1.0)
        assert not page.errors, format_messages(page.errors)
        assert not page.external_requests, page.external_requests
        divs = browser.count(".plotly-graph-div")
        assert divs == built.figures
        # every figure drew its SVG (plotly adds svg.main-svg when a plot renders)
        drawn = browser.js("""return Array.from(document.querySelectorAll('.plotly-graph-div'))
            .filter(d => d.querySelector('svg.main-svg')).length""")
        assert drawn == divs
        # every figure has traces on screen (lines, markers or heatmap images)
        empty = browser.js("""return Array.from(document.querySelectorAll('.plotly-graph-div'))
            .filter(d => !d.querySelector('.scatterlayer .trace, .heatmaplayer .hm'))
            .map(d => d.id)""")
        assert not empty, f"figures without any drawn trace: {empty}"
        assert browser.count(".cell.note") == len(built.notes)
        shot = browser.screenshot(tmp_path / "report.png")
    assert shot.stat().st_size > 10_000
    print(f"report screenshot: {shot}")


def test_report_errors_are_one_line(tiny_hub, tmp_path):
    for kwargs, match in (
        (dict(runs=["nope"]), r"run\(s\) \['nope'\] not in hub"),
        (dict(runs=[]), "at least one run"),
        (dict(runs=["tiny-1l", "tiny-1l"]), "listed more than once"),
        (dict(runs=["tiny-1l"], every=0), "every=0"),
        (dict(runs=["tiny-1l"], ablations="maybe"), "ablations='maybe'"),
        (dict(runs=["tiny-1l"], kind="partial"), "kind='partial'"),
    ):
        with pytest.raises(ReportError, match=match) as err:
            build_report(tiny_hub, out=tmp_path / "r.html", **kwargs)
        assert "\n" not in str(err.value)
    with pytest.raises(ReportError, match="should be an .html file"):
        build_report(tiny_hub, ["tiny-1l"], tmp_path / "r.png")
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.slow
def test_report_command(built, tiny_hub, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    cli_report.add_parser(parser.add_subparsers())
    out = tmp_path / "cli.html"
    args = parser.parse_args(["report", "--hub", str(tiny_hub.root), "--runs", *RUNS,
                              "--out", str(out), "--n-examples", "32", "-q"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and f"{built.figures} figures" in printed
    assert "note: qk/tiny-1l" in printed
    assert out.stat().st_size > 1_000_000  # plotly.js is embedded
