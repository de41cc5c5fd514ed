"""An experiment is a plugin: a module that registers its grid, analysis and report section is all it takes."""

import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from hyperstition.analysis import catalog, registry
from hyperstition.analysis.config import experiments_dir
from hyperstition.run import build_simulated_run

PLUGIN = """
import pandas as pd

from hyperstition.analysis.html import e
from hyperstition.analysis.registry import Experiment, register_experiment, section


@section("toy-plugin", "toy plugin", order=35)
def toy_section(view):
    return f'<h2 id="toy-plugin">Toy plugin</h2><p>arms seen: {e(", ".join(view.arms))}</p>'


def toy_analysis(per_seed, control):
    base = per_seed[per_seed.strategy == "base"]
    row = dict(arm=control, seed=pd.NA, strategy="base", step=pd.NA, tokens=pd.NA, kl_bits=0.0, context="observed",
               metric="toy_plugin_cells", value=float(base[["arm", "seed"]].drop_duplicates().shape[0]),
               ci_low=float("nan"), ci_high=float("nan"))
    return pd.DataFrame([row])


register_experiment(Experiment(name="toyplugin", grid=GRID, analyses=(toy_analysis,), sections=(toy_section,)))
"""


@pytest.fixture
def toy_plugin(tmp_path, monkeypatch):
    grid = tmp_path / "toyplugin.yaml"
    smoke = (experiments_dir() / "smoke.yaml").read_text()
    grid.write_text(smoke.replace("name: smoke", "name: toyplugin"))
    module = tmp_path / "toy_plugin_experiment.py"
    module.write_text(f"from pathlib import Path\nGRID = Path({str(grid)!r})\n" + textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    __import__("toy_plugin_experiment")
    yield grid
    registry.unregister_experiment("toyplugin")
    sys.modules.pop("toy_plugin_experiment", None)


def test_a_new_experiment_is_one_module_and_one_yaml(toy_plugin, tmp_path):
    summary = build_simulated_run(tmp_path / "run", "toyplugin", ["seeds=[0,1]"])
    assert summary.ok, summary.failed
    page = summary.report.read_text()
    assert '<h2 id="toy-plugin">Toy plugin</h2><p>arms seen: unfiltered, misalignment_upsampled</p>' in page
    assert '<a href="#toy-plugin">toy plugin</a>' in page
    # Its section sits where its order says, among the sections every run has.
    assert page.index('id="toy-plugin"') < page.index('id="persistence"') < page.index('id="provenance"')
    assert 'id="headline"' not in page  # the shipped experiments' sections are theirs, not every run's
    df = pd.read_parquet(tmp_path / "run" / "results.parquet")
    added = df[df.metric == "toy_plugin_cells"]
    assert len(added) == 1 and added.value.iloc[0] == 4 and added.seed.isna().all()  # 2 arms x 2 seeds


def test_the_report_and_runner_name_no_experiment():
    src = Path(catalog.__file__).resolve().parents[1]
    grid = ("runner", "plan", "jobs", "cell", "schedule", "stale")
    for path in (src / "report" / "render.py", *(src / "experiments" / f"{name}.py" for name in grid)):
        text = path.read_text().lower()
        for plugin in catalog.SHIPPED:
            assert plugin.name not in text, (path, plugin.name)


def test_every_shipped_grid_has_a_plugin():
    assert {p.name for p in catalog.SHIPPED} == {p.stem for p in experiments_dir().glob("*.yaml")}
    for plugin in catalog.SHIPPED:
        assert catalog.plugin_for(plugin.name) is plugin and plugin.grid.is_file()
    unknown = catalog.plugin_for("someone-elses")
    assert unknown.sections == () and unknown.analyses == ()
