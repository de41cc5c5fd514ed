"""Issue 26, the classes that need more than one command line: locks that cannot be bypassed or abused, `query`
during a run, output encodings, interrupts inside DuckDB, a full disk in a Rust-backed writer, and configs whose
`preset:` means what it says."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hyperstition.cli import main
from hyperstition.config import PipelineConfig, load_config
from hyperstition.experiments.rundir import RunLock, runner_active
from hyperstition.io import directory_lock, training_lock

SRC = Path(__file__).resolve().parents[2] / "src"


def _cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _subprocess(argv: list[str], **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "hyperstition.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding=env.get("PYTHONIOENCODING", "utf-8"),
        env=dict(os.environ, PYTHONPATH=str(SRC), **env),
        preexec_fn=sigint_default,
    )


def sigint_default() -> None:
    """The child starts with SIGINT at its default, as in a terminal: a suite launched in the background by a
    non-interactive shell inherits SIGINT ignored, and Python then never raises KeyboardInterrupt at all."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# --- class 3: locks ----------------------------------------------------------------------------------------------


def test_deleting_the_lock_file_does_not_let_a_second_runner_in(run_copy):
    with RunLock(run_copy):
        (run_copy / ".lock").unlink()
        assert runner_active(run_copy)
        with pytest.raises(Exception, match="another process"):
            RunLock(run_copy).acquire()
        code, _, err = _cli(["run", "smoke", "seeds=[0]", "--out", str(run_copy)])
        assert code != 0 and "another process" in err and len(err.strip().splitlines()) == 1
    assert not runner_active(run_copy)


def test_a_lock_file_planted_as_a_link_is_replaced_never_followed(tmp_path, run_copy):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    for lock in (run_copy / ".lock", tmp_path / "train" / "train.lock"):
        lock.parent.mkdir(exist_ok=True)
        if lock.exists() or lock.is_symlink():
            lock.unlink()
        lock.symlink_to(victim)
    with RunLock(run_copy):
        pass
    with training_lock(tmp_path / "train"):
        pass
    assert victim.read_text() == "precious\n"
    assert not (run_copy / ".lock").is_symlink() and not (tmp_path / "train" / "train.lock").is_symlink()


def test_two_corpus_builds_into_one_directory_do_not_race(tmp_path):
    out = tmp_path / "c"
    out.mkdir()
    with directory_lock(out, out / "corpus.lock", "building a corpus in this directory"):
        code, _, err = _cli(["corpus", "smoke", "--out", str(out)])
    assert code != 0 and "another process" in err and len(err.strip().splitlines()) == 1
    assert not (out / "corpus").exists()


# --- class 4: query during a run -----------------------------------------------------------------------------------


def test_query_during_an_active_run_says_the_results_are_partial(run_copy):
    before = sorted(p.name for p in run_copy.iterdir())
    with RunLock(run_copy):
        code, out, err = _cli(["query", str(run_copy), "select count(*) from results"])
    assert code == 0 and "still in progress" in err and "partial" in err
    assert sorted(p.name for p in run_copy.iterdir()) == before


# --- class 6: encodings, interrupts, full disk ----------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_output_to_a_terminal_that_is_not_utf8(finished_run, encoding):
    for argv in (["status", str(finished_run)], ["query", str(finished_run), "select '—é✓' as v"]):
        proc = _subprocess(argv, PYTHONIOENCODING=encoding)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and "Traceback" not in err and "internal error" not in err, (argv, err)


def test_ctrl_c_during_a_long_query_is_a_clean_interrupt(finished_run):
    proc = _subprocess(["query", str(finished_run), "select sum(hash(a)) from range(100000000000) t(a)"])
    time.sleep(15)  # imports, loading the table and starting the scan (slow on a loaded machine)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["hyperstition query: interrupted; rerun the same command to resume."]


def test_a_full_disk_while_saving_a_checkpoint_is_one_line(tmp_path):
    """RLIMIT_FSIZE makes every write past 64 KiB fail (EFBIG), as a full disk does, in Python and Rust writers."""
    code = (
        "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN);"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536));"
        "from hyperstition.cli import main;"
        f"sys.exit(main(['pretrain', 'smoke', '--out', {str(tmp_path / 'p')!r}, '--no-progress']))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(SRC)),
        timeout=600,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert "too large" in lines[0].lower() and "internal error" not in lines[0]


def test_resource_errors_of_rust_writers_and_allocators_are_described():
    from hyperstition.resources import describe

    disk = describe(Exception("Error while serializing: I/O error: No space left on device (os error 28)"))
    assert "No space left on device" in disk and "resume" in disk
    memory = describe(
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 4000000000 bytes")
    )
    assert "3.73 GiB" in memory
    assert describe(ValueError("a bug")) is None


# --- class 7: configs mean what they say ----------------------------------------------------------------------------


def test_a_config_file_naming_a_preset_gets_that_preset(tmp_path):
    smoke = load_config(PipelineConfig, "smoke")
    path = tmp_path / "mine.yaml"
    path.write_text("preset: smoke\npretrain:\n  steps: 7\n")
    mine = load_config(PipelineConfig, str(path))
    assert mine.pretrain.steps == 7 and mine.preset == "smoke"
    assert mine.tokenizer == smoke.tokenizer and mine.model == smoke.model and mine.corpus == smoke.corpus
    bare = tmp_path / "bare.yaml"
    bare.write_text("pretrain:\n  steps: 7\n")
    assert load_config(PipelineConfig, str(bare)).preset == str(bare)  # not a preset that was never applied


def test_a_folder_named_like_a_preset_and_a_file_with_an_equals_sign(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "smoke").mkdir()
    assert (
        load_config(PipelineConfig, "smoke").pretrain.steps
        == load_config(PipelineConfig, "smoke.yaml".replace(".yaml", "")).pretrain.steps
    )
    (tmp_path / "a=b.yaml").write_text("preset: smoke\npretrain:\n  steps: 5\n")
    code, _, err = _cli(["corpus", "a=b.yaml", "--out", str(tmp_path / "out")])
    assert code == 0, err
    saved = PipelineConfig.from_yaml((tmp_path / "out" / "config.yaml").read_text())
    assert saved.pretrain.steps == 5 and saved.preset == "smoke"


# --- class 8: noise -------------------------------------------------------------------------------------------------


def test_nan_and_inf_in_results_give_one_note_not_a_screen_of_warnings(run_copy):
    import numpy as np
    import pandas as pd

    path = run_copy / "results.parquet"
    df = pd.read_parquet(path)
    df.loc[::3, "value"], df.loc[1::3, "value"], df.loc[::5, "ci_low"] = np.nan, np.inf, -np.inf
    df.to_parquet(path)
    for argv in (["report", str(run_copy)], ["compare", str(run_copy), str(run_copy)]):
        code, _, err = _cli(argv)
        assert code == 0 and len(err.strip().splitlines()) <= 1, (argv, err)
        assert "Warning:" not in err.replace("RuntimeWarning: ", "", 1) or "note:" in err, err


def test_pretraining_and_evaluating_print_no_tokenizer_length_warning(tmp_path):
    """Smoke documents are longer than the smoke context (128 tokens): pretraining packs them into context-sized
    rows, the scorers cut held-out texts to the context, and every scored sequence fits it (measured: the longest
    scored prompt + response is 128 tokens of 128), so the tokenizer's "longer than the maximum" warning is noise."""
    out = tmp_path / "p"
    for argv in (
        ["pretrain", "smoke", "pretrain.steps=2", "--out", str(out), "--no-progress"],
        ["eval", "--model", str(out / "final"), "--suite", "smoke", "--out", str(tmp_path / "e"), "--quiet"],
    ):
        proc = _subprocess(argv)
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        assert "Token indices sequence length" not in err and "Warning" not in err, (argv, err)


# --- class 9: verify --------------------------------------------------------------------------------------------------


def _digest(path: Path) -> dict:
    import hashlib

    return {
        p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in path.rglob("*")
        if p.is_file()
    }


@pytest.mark.parametrize("cell", ["unfiltered/seed-0/base", "unfiltered/seed-0/sft", None])
def test_verify_reproduces_a_cell_and_leaves_the_run_alone(run_copy, cell):
    before = _digest(run_copy)
    code, out, err = _cli(["verify", str(run_copy), *([cell] if cell else [])])
    assert code == 0, out + err
    assert "reproduced: every content hash and metric is identical" in out
    assert "differs:" not in out and "machine: same as recorded in run.json" in out
    assert _digest(run_copy) == before


def test_verify_names_machine_and_metric_differences(run_copy):
    import json

    info = json.loads((run_copy / "run.json").read_text())
    assert info["machine"]["torch_cpu_capability"] and info["machine"]["packages"]["torch"]  # recorded at creation
    info["machine"]["torch_cpu_capability"] = "SOMETHING_ELSE"
    (run_copy / "run.json").write_text(json.dumps(info))
    rows = run_copy / "cells" / "unfiltered" / "seed-0" / "base" / "rows.parquet"
    done_path = rows.parent / "DONE.json"
    import pandas as pd

    df = pd.read_parquet(rows)
    df["value"] = df["value"] + 0.5  # what the run holds is no longer what this code computes
    df.to_parquet(rows)
    done = json.loads(done_path.read_text())
    from hyperstition.io import sha256_file

    done["files"][f"cells/unfiltered/seed-0/base/{rows.name}"] = {
        "bytes": rows.stat().st_size,
        "sha256": sha256_file(rows),
    }
    done_path.write_text(json.dumps(done))
    code, out, _ = _cli(["verify", str(run_copy), "unfiltered/seed-0/base"])
    assert code == 1
    assert "different floats" in out and "largest difference 0.5" in out and "SOMETHING_ELSE -> " in out


def test_verify_refuses_an_unknown_or_unfinished_cell(run_copy):
    code, _, err = _cli(["verify", str(run_copy), "nobody/seed-0/base"])
    assert code == 2 and "no cell" in err and len(err.strip().splitlines()) == 1
    (run_copy / "cells" / "unfiltered" / "seed-0" / "base" / "DONE.json").unlink()
    code, _, err = _cli(["verify", str(run_copy), "unfiltered/seed-0/base"])
    assert code == 2 and "not finished" in err


def test_a_live_holder_in_the_lock_record_is_respected_even_without_its_flock(run_copy):
    """The record is checked behind the flock: a live hyperstition process named there (one that could not take
    the flock, say on a filesystem without it) keeps a second runner out; a dead one does not."""
    import json
    import platform

    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "hyperstition"])
    try:
        record = {"pid": holder.pid, "host": platform.node(), "since": "now"}
        (run_copy / ".lock").write_text(json.dumps(record))
        with pytest.raises(Exception, match=f"pid {holder.pid}"):
            RunLock(run_copy).acquire()
    finally:
        holder.kill()
        holder.wait()
    with RunLock(run_copy):  # the holder is gone: its record no longer counts
        pass
