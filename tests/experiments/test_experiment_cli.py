"""`run | status | query | report | compare` as a user types them (simulated stages)."""

import argparse
import json
import subprocess
import sys

import pytest

from hyperstition import run as run_command
from hyperstition.experiments import cli
from hyperstition.experiments.executor import InlineExecutor
from hyperstition.report import cli as report_cli
from hyperstition.run import build_simulated_run

SIM = "hyperstition.experiments.simulate"


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "220")


def test_register_adds_the_commands_with_help(capsys):
    parser = argparse.ArgumentParser(prog="hyperstition")
    subparsers = parser.add_subparsers(dest="command")
    for module in (run_command, cli, report_cli):  # `run` above experiments and report; `report`, `compare` in report
        module.register(subparsers)
    for command in ("run", "status", "query", "report", "compare"):
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--help"])
        text = capsys.readouterr().out
        assert command in text
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--help"])
    text = capsys.readouterr().out
    for needle in ("KEY=VALUE", "stickiness", "--workers", "--out", "seeds=[0]", "dose", "smoke"):
        assert needle in text


def test_run_rejects_unknown_experiment_and_missing_preset(capsys):
    assert cli.main(["run", "dosee"]) == 2
    err = capsys.readouterr().err
    assert (
        "'dosee' does not exist" in err
        and "awareness, calibration, channels, channels_sizes, conditional, curriculum, dose, feedback, filtering, "
        "relapse, smoke, stickiness, sydney, timing"
        in err
    )
    assert cli.main(["run", "smoke", "preset=huge"]) == 2
    err = capsys.readouterr().err
    assert "preset 'huge' does not exist" in err and "available presets" in err


def test_run_defaults_to_stickiness_and_takes_overrides_first(monkeypatch):
    seen = {}

    def fake_run(exp, out, **kw):
        seen.update(exp=exp, out=out, **kw)
        raise SystemExit(0)

    monkeypatch.setattr("hyperstition.experiments.runner.run_experiment", fake_run)
    with pytest.raises(SystemExit):
        cli.main(["run", "seeds=[0]", "--workers", "1"])
    assert seen["exp"].name == "stickiness" and seen["exp"].seeds == [0] and seen["exp"].workers == 1
    assert str(seen["out"]) == "runs/stickiness-quick" and seen["stages"] == "hyperstition.experiments.stages"


def test_run_status_query_report_compare(tmp_path, capsys, monkeypatch):
    # In-process jobs keep this fast; worker processes are covered by the runner and kill-and-resume tests.
    monkeypatch.setattr("hyperstition.experiments.executor.LocalExecutor", lambda workers=0: InlineExecutor())
    run = tmp_path / "a"
    argv = ["run", "smoke", "seeds=[0]", "--stages", SIM, "--out", str(run), "--workers", "2", "--no-progress"]
    assert cli.main(argv) == 0
    out = capsys.readouterr()
    assert f"report: {run}/report.html" in out.out and "6 ran" in out.out

    assert cli.main(["status", str(run)]) == 0
    text = capsys.readouterr().out
    assert text.count(" done ") >= 6 and "6 done" in text

    assert (
        cli.main(["query", str(run), "select strategy, count(*) as n from results group by strategy order by strategy"])
        == 0
    )
    text = capsys.readouterr().out
    assert "base" in text and "sft" in text
    assert cli.main(["query", str(run), "select nope from results"]) == 2
    assert "SQL error" in capsys.readouterr().err

    (run / "report.html").unlink()
    assert cli.main(["report", str(run)]) == 0
    assert (run / "report.html").exists()

    other = tmp_path / "b"
    build_simulated_run(
        other, "smoke", ["arms.misalignment_upsampled={corpus.upsample: {ai_misaligned: 6}}"], render=False
    )
    capsys.readouterr()
    assert cli.main(["compare", str(run), str(other)]) == 0
    text = capsys.readouterr().out
    assert "bits_aligned_vs_misaligned" in text and "B \u2212 A" in text and "misalignment_upsampled" in text

    # A failed cell: exit status 1, error and traceback path in the summary; status shows it.
    failing = tmp_path / "c"
    monkeypatch.setenv("HYPERSTITION_SIMULATE_FAIL", "unfiltered/seed-0/sft")
    assert (
        cli.main(
            ["run", "smoke", "--stages", SIM, "--out", str(failing), "--workers", "2", "--no-progress", "--no-report"]
        )
        == 1
    )
    text = capsys.readouterr().out
    assert "1 failed" in text and "simulated failure" in text and "traceback.txt" in text
    assert cli.main(["status", str(failing)]) == 0
    assert "failed" in capsys.readouterr().out


def test_commands_refuse_bad_run_directories(tmp_path, capsys):
    run = tmp_path / "old"
    build_simulated_run(run, "smoke", render=False)
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "format_version": 0, "hyperstition_version": "0.0.1"}))
    for argv in (
        ["status", str(run)],
        ["report", str(run)],
        ["query", str(run), "select 1"],
        ["compare", str(run), str(run)],
        ["run", "smoke", "--out", str(run)],
    ):
        assert cli.main(argv) == 2, argv
        assert "written by hyperstition 0.0.1 in run format 0" in capsys.readouterr().err
    assert cli.main(["status", str(tmp_path / "nowhere")]) == 2
    assert "no such run directory" in capsys.readouterr().err


def test_status_and_query_do_not_import_torch(tmp_path):
    """Reading a finished run needs no deep-learning stack: `status` answered in 0.6 s instead of 2.3 s once the
    checkpoint manifest's name stopped pulling in torch (benchmarks/README.md, "Reading a run")."""
    run = tmp_path / "run"
    build_simulated_run(run)
    probe = (
        "import sys\nfrom hyperstition.cli import main\n"
        "codes = [main(['status', sys.argv[1]]), main(['query', sys.argv[1], 'SELECT count(*) AS n FROM results'])]\n"
        "print('EXIT', codes, 'torch' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", probe, str(run)], capture_output=True, text=True, timeout=120)
    lines = proc.stdout.strip().splitlines()
    assert lines and lines[-1] == "EXIT [0, 0] False", proc.stdout[-1000:] + proc.stderr[-1000:]
