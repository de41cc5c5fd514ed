"""The channels experiment end to end on the real stages at the smoke preset: a subset of its grid (the x0 corpus and
the described channel at x9 without an identity link, two seeds), then its report section with numbers in it. The
`name` link's corpora and prompts are checked in tests/world/test_identity.py and by the leak test
(tests/world/test_itemsets.py builds every arm of the shipped grid); two links here doubled this test's time."""

import re

import pandas as pd
import pytest

from hyperstition.analysis.catalog import load_experiment
from hyperstition.analysis.channels import channel_arms, realised_share, transfer_efficiency
from hyperstition.analysis.rundir import RunDir
from hyperstition.analysis.store import read_results
from hyperstition.analysis.view import RunView
from hyperstition.experiments.executor import LocalExecutor
from hyperstition.run import run_and_report

SUBSET = ["none_x0", "none_described_x9"]


@pytest.mark.slow
def test_channels_subset_on_the_real_stages(tmp_path):
    full = load_experiment("channels")
    arms = "{" + ", ".join(f"{a}: {_spec(full.arms[a])}" for a in SUBSET) + "}"
    exp = load_experiment("channels", ["preset=smoke", "eval=smoke", "seeds=[0,1]", f"arms={arms}", "control=none_x0"])
    run = tmp_path / "run"
    summary = run_and_report(exp, run, executor=LocalExecutor(2))
    assert summary.ok, summary.failed
    view = RunView.of(RunDir.open(run), read_results(run), pd.DataFrame())
    assert {(a.link, a.channel) for a in channel_arms(view)} == {("none", None), ("none", "described")}
    assert realised_share(view, "none_x0", 0, "described") == 0.0
    assert realised_share(view, "none_described_x9", 0, "described") > 10  # 9 x 5.4% of the natural corpus
    estimates = transfer_efficiency(view)
    assert {(c, link) for c, link, _ in estimates} == {("described", "none")}
    assert all(est.n == 2 for est in estimates.values())
    page = (run / "report.html").read_text()
    section = page[page.index('id="channels"') :]
    assert "transfer efficiency heatmap" in section and "data:image/png;base64" in section
    for channel, link in (("described", "none"),):
        row = re.search(rf"<td>{channel}</td><td>{link}</td><td>observed</td><td[^>]*>(-?\d+\.\d+) \[", section)
        assert row, (channel, link)


def _spec(overrides: dict) -> str:
    """An arm's overrides as one flow mapping for a `arms={...}` override."""
    parts = []
    for key, value in overrides.items():
        parts.append(f"{key}: {value}".replace("'", ""))
    return "{" + ", ".join(parts) + "}"
