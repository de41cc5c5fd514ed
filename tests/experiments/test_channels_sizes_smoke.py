"""`hyperstition run channels_sizes` on the simulated stages at the smoke preset: every arm at every model size,
and the channels section renders the phase diagram with each size's parameter count from its model config."""

import re

import pandas as pd

from hyperstition.analysis.catalog import load_experiment
from hyperstition.analysis.channels import channel_arms, size_parameters, transfer_efficiency
from hyperstition.analysis.config import arm_size, pipeline_config
from hyperstition.analysis.rundir import RunDir
from hyperstition.analysis.store import read_results
from hyperstition.analysis.view import RunView
from hyperstition.model.size import non_embedding_parameters
from hyperstition.run import build_simulated_run

OVERRIDES = ["preset=smoke", "eval=smoke", "seeds=[0,1]"]


def test_channels_sizes_renders_the_phase_diagram(tmp_path):
    run = tmp_path / "run"
    summary = build_simulated_run(run, "channels_sizes", OVERRIDES)
    assert summary.ok, summary.failed
    exp = load_experiment("channels_sizes", OVERRIDES)
    view = RunView.of(RunDir.open(run), read_results(run), pd.DataFrame())
    assert view.arms == list(exp.arms) and len(exp.arms) == 8 * len(exp.model_sizes)
    arms = channel_arms(view)
    assert {a.size for a in arms} == set(exp.model_sizes) and all(a.size == arm_size(a.arm)[1] for a in arms)
    counts = {s: non_embedding_parameters(pipeline_config(exp, f"none_x0@{s}", 0).model) for s in exp.model_sizes}
    assert size_parameters(view, arms) == dict(sorted(counts.items(), key=lambda item: item[1]))
    assert len(set(counts.values())) == len(counts)  # three distinct shapes
    assert {link for _, link, _ in transfer_efficiency(view)} == {f"{k}@{s}" for k in ("none", "name") for s in counts}
    page = (run / "report.html").read_text()
    phase = page[page.index('id="channels-phase"') :]
    assert "phase diagram heatmap" in phase and "data:image/png;base64" in phase
    for size, n in counts.items():
        assert f"{size}: {n:,}" in phase and f"{size} ({n / 1e6:.2f}M)" in phase
    for channel in ("transcript", "quoted", "described"):
        for link in ("none", "name"):
            row = re.search(rf"<tr><td>{channel}</td><td>{link}</td><td>observed</td>(.*?)</tr>", phase)
            assert row, (channel, link)
            cells = re.findall(r"<td[^>]*>([^<]*)</td>", row.group(1))
            assert len(cells) == len(counts) + 1 and all(re.match(r"-?\d+\.\d+ \[", c) for c in cells[:-1])
            assert re.fullmatch(r"\w+ \(\d\.\d\dM\)|none up to \w+", cells[-1]), cells[-1]
