"""report.html is self-contained, complete and escapes everything it quotes; `compare` diffs two runs."""

import base64
import re
import shutil

import pytest

from hyperstition.report import render_report
from hyperstition.report.compare import compare_runs
from hyperstition.run import build_simulated_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "run"
    # Two seeds: the fewest with a t interval over seeds (1 degree of freedom), and stickiness with Fieller's.
    summary = build_simulated_run(path, "smoke", ["seeds=[0,1]", "strategies=[sft,dpo]"])
    assert summary.ok
    return path


def test_report_is_self_contained(run):
    page = (run / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"<script", page, re.I), "no scripts (and simulated responses' <script> must be escaped)"
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page, re.I), "no external resources"
    assert "<style>" in page and '<link rel="stylesheet"' not in page
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) >= 6  # bits, rates, persistence x2, stickiness x2, capability
    for data in images:
        assert base64.b64decode(data).startswith(b"\x89PNG\r\n\x1a\n")


def test_report_has_every_section(run):
    page = (run / "report.html").read_text()
    for needle in (
        "Headline numbers",
        "Dose&ndash;response",
        "Persistence under post-training",
        "Stickiness S(K)",
        "Capability cost",
        "Sample of generated responses",
        "Provenance",
        "Package versions",
        "Resolved experiment config",
        "git commit",
        "wall time",
        "seeds",
        "bits aligned vs misaligned",
    ):
        assert needle in page, needle
    assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;" in page
    assert "&lt;b&gt;Nobody is watching&lt;/b&gt;" in page
    assert "misalignment_upsampled" in page and "torch" in page


def test_headline_says_what_its_seeds_can_detect(run, tmp_path):
    page = (run / "report.html").read_text()
    assert "detectable &Delta; (half-width)" in page or "detectable \u0394 (half-width)" in page
    assert "could detect at the 5% level: a true difference that large is found about half the time" in page
    assert "one 1.6 times as large 80% of the time" in page  # noncentral t at 2 seeds
    assert "own 95% half-widths averaged and divided by the square root of the number of seeds" in page
    one_seed = build_simulated_run(tmp_path / "one", "smoke", ["seeds=[0]"]).report.read_text()
    assert "could detect at the 5% level. S(K)" in one_seed.replace("\n", " ")  # no t test, no power statement


def test_report_rerenders_from_results_alone(run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "cells")
    (copy / "report.html").unlink()
    path = render_report(copy)
    page = path.read_text()
    assert path == copy / "report.html" and page.count("data:image/png;base64,") >= 6
    assert "incomplete" not in page


def test_compare_runs(run, tmp_path):
    same = compare_runs(run, run)
    assert len(same) and (same.delta.abs() < 1e-12).all()
    other = tmp_path / "other"
    build_simulated_run(
        other,
        "smoke",
        ["arms.misalignment_upsampled={corpus.upsample: {ai_misaligned: 6, dialogue_misaligned: 6}}"],
        render=False,
    )
    diff = compare_runs(run, other)
    bits = diff[
        (diff.metric == "bits_aligned_vs_misaligned") & (diff.strategy == "base") & (diff.context == "observed")
    ].set_index("arm")
    assert bits.loc["misalignment_upsampled", "delta"] < 0  # more misaligned discourse -> fewer aligned bits
    assert {"a", "b", "delta", "a_kl", "b_kl"} <= set(diff.columns)
    # Rows present in only one run (dpo exists only in A) have a NaN delta rather than vanishing.
    assert diff[diff.strategy == "dpo"].delta.isna().all() and len(diff[diff.strategy == "dpo"])


def test_report_renders_degenerate_grids(tmp_path):
    # Base evaluation only (no post-training), and a single arm (no paired differences, no stickiness).
    base_only = build_simulated_run(tmp_path / "base_only", "smoke", ["strategies=[]"]).report.read_text()
    assert "No post-training results in this run" in base_only and base_only.count("data:image/png") >= 3
    one_arm = build_simulated_run(tmp_path / "one_arm", "smoke", ["arms={only: {}}", "control=only"]).report.read_text()
    assert "Needs post-training results and at least two arms" in one_arm and "Only one arm" in one_arm


def test_bits_axis_goes_symlog_only_when_one_arm_dwarfs_the_rest():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hyperstition.analysis.plots import symlog_if_wide

    fig, (wide, narrow) = plt.subplots(1, 2)
    assert symlog_if_wide(wide, [-7.2, -0.3, 0.8, 7.7, 259.0])
    assert wide.get_yscale() == "symlog"
    assert not symlog_if_wide(narrow, [-7.2, -0.3, 0.8, 7.7, 12.0])
    assert narrow.get_yscale() == "linear"
    plt.close(fig)
