"""`hyperstition toy fit` on the smoke grid's results, and `toy plot`."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from hyperstition.analysis.store import collect_results
from hyperstition.cli import main
from hyperstition.report.toy_section import toy_section
from hyperstition.run import build_simulated_run
from hyperstition.schema import TOY_CURVES_FILE, TOY_FIT_FILE, TOY_RESULT_COLUMNS, TOY_RESULTS_FILE
from hyperstition.toy.fit import ToyFitError, fit_results, fit_run


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("toy") / "run"
    assert build_simulated_run(path, "smoke", render=False).ok
    return path


def test_toy_fit_on_the_smoke_grid(smoke_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(smoke_run, run)
    assert main(["toy", "fit", str(run)]) == 0
    rows = pd.read_parquet(run / TOY_RESULTS_FILE)
    assert tuple(rows.columns) == TOY_RESULT_COLUMNS
    assert set(rows.model) == {"bayes", "gd"} and set(rows.context) == {"observed", "unobserved"}
    assert np.isfinite(rows.predicted).all() and np.isfinite(rows.measured).all()
    # both models start from the same fitted priors, so they agree on the base model (K = 0)
    base = rows[rows.kl_bits == 0].pivot_table(index=["arm", "seed", "context"], columns="model", values="predicted")
    assert np.allclose(base.bayes, base.gd)
    fits = json.loads((run / TOY_FIT_FILE).read_text())["fits"]
    for fit in fits:
        assert fit["rmse"]["all"] < fit["null_rmse"]["all"], fit  # both beat "nothing changes"
        assert set(fit["priors"]) == {"unfiltered", "misalignment_upsampled"}
    assert len(pd.read_parquet(run / TOY_CURVES_FILE)) > len(rows)
    page = (run / "report.html").read_text()
    assert "Toy models: Bayesian and gradient-descent predictions" in page and "gradient-descent model" in page
    assert "results.parquet changed" not in page


def test_toy_fit_survives_the_runner_rewriting_results(smoke_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(smoke_run, run)
    fit_run(run)
    before = pd.read_parquet(run / TOY_RESULTS_FILE)
    (run / "results.parquet").unlink()
    collect_results(run)  # what the runner does at the end of every invocation
    assert main(["query", str(run), "select count(*) as n from toy_results"]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(run / TOY_RESULTS_FILE), before)
    fit_run(run)  # deterministic: the same results give the same predictions
    pd.testing.assert_frame_equal(pd.read_parquet(run / TOY_RESULTS_FILE), before)
    # a changed results.parquet is flagged in the report until the fit is redone
    df = pd.read_parquet(run / "results.parquet")
    df.loc[0, "value"] += 1.0
    df.to_parquet(run / "results.parquet")
    assert "results.parquet changed" in toy_section(run, df)


def test_report_section_without_a_fit_says_how_to_get_one(smoke_run):
    html = toy_section(smoke_run, pd.read_parquet(smoke_run / "results.parquet"))
    assert "Not fitted yet" in html and "hyperstition toy fit" in html and "<img" not in html


def test_toy_fit_errors_are_one_line(tmp_path, capsys):
    assert main(["toy", "fit", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing" in err
    base_only = pd.DataFrame(
        {
            "run": "r",
            "arm": "a",
            "seed": 0,
            "strategy": "base",
            "step": 0,
            "tokens": 0,
            "kl_bits": 0.0,
            "context": "observed",
            "metric": "bits_aligned_vs_misaligned",
            "value": 1.0,
            "ci_low": 0.5,
            "ci_high": 1.5,
        },
        index=[0],
    )
    with pytest.raises(ToyFitError, match="no post-training curves"):
        fit_results(base_only)


def test_toy_plot_writes_figures_and_their_numbers(tmp_path, capsys):
    assert main(["toy", "plot", "--out", str(tmp_path), "--priors", "0.5,2", "--sharing", "0,0.9"]) == 0
    for name in ("unobserved_misalignment", "stickiness"):
        assert (tmp_path / f"{name}.png").read_bytes().startswith(b"\x89PNG")
        assert len(pd.read_csv(tmp_path / f"{name}.csv")) > 10
    data = pd.read_csv(tmp_path / "unobserved_misalignment.csv")
    far = data[(data.context == "unobserved") & (data.n == data.n.max())].set_index("prior_bits").misaligned_rate
    assert far.loc[2.0] == pytest.approx(0.2, abs=0.01)  # the deceptive share 1 / (1 + 2^2), give or take the floor
    assert main(["toy", "plot", "--out", str(tmp_path), "--sharing", "0,2"]) == 2
    assert "sharing must be in [0, 1]" in capsys.readouterr().err
