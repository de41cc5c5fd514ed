"""Fuzz the CLI with malformed input of every kind: every case exits non-zero with one line on stderr that starts
with `hyperstition`, names what is wrong, and carries no traceback (and no "internal error", the CLI's last-resort
line for a bug).

Generated, so it keeps up with the configs: every numeric, boolean and choice field of every stage config gets
bool-for-number, NaN/inf, wrong-type and out-of-range values through dotted overrides; config paths get binary
files, directories, FIFOs and devices; every file a command reads (checkpoints, corpus, tokenizer, run files) is
given missing, binary and wrong-shaped. Validation only: the cases run in-process through `cli.main(argv)`, and a
few also as real subprocesses to show the in-process harness sees what a user sees.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import typing
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import BaseModel

from hyperstition.analysis.config import ExperimentConfig
from hyperstition.cli import main
from hyperstition.config import DOC_CLASSES, ModelConfig, PipelineConfig
from hyperstition.evals.config import EvalSections, EvalSuiteConfig
from hyperstition.posttrain.config import PosttrainConfig

SRC = Path(__file__).resolve().parents[2] / "src"
SIMULATE = "hyperstition.experiments.simulate"
HANG_GUARD_S = 60  # a case that blocks (say, on a FIFO) fails instead of hanging the suite


@dataclass(frozen=True)
class Case:
    name: str
    argv: tuple[str, ...]
    names: str = ""  # a word the one-line message must contain (the field or the file)


# ---------------------------------------------------------------------------------------------------------------
# Generated override cases


def _bad_values(annotation: typing.Any, field_info: typing.Any) -> list[str]:
    """YAML texts that no value of this field's type accepts."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    bounded_below = any(type(m).__name__ in ("Ge", "Gt") for m in field_info.metadata)
    bounded_above = any(type(m).__name__ in ("Le", "Lt") for m in field_info.metadata)
    if annotation is bool:
        return ["maybe", "2", "[true]"]
    if annotation is int:
        return (
            ["true", "false", ".nan", "1.5", "abc", "[1]", "{a: 1}"]
            + (["-1"] if bounded_below else [])
            + (["100000000000000"] if bounded_above else [])
        )
    if annotation is float:
        return (
            ["true", ".nan", ".inf", "-.inf", "abc", "[1]"]
            + (["-1"] if bounded_below else [])
            + (["1e30"] if bounded_above else [])
        )
    if origin is typing.Literal:
        return ["bogus", "1"]
    if origin is list and args and args[0] is int:
        return ["[true]", "[.nan]", "[-1]", "5"]
    if origin is dict and len(args) == 2 and args[1] is float:
        return ["{world: .nan}", "{aligned: .inf}", "{world: true}", "[1]"]
    if origin is list:
        return ["5", "{a: 1}"]
    return []


def _override_cases(model: type[BaseModel], prefix: str, command: tuple[str, ...]) -> list[Case]:
    cases = []
    for name, info in model.model_fields.items():
        key = f"{prefix}{name}"
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            cases.append(Case(f"{command[0]}:{key}=section-as-scalar", (*command, f"{key}=5"), name))
            cases += _override_cases(annotation, f"{key}.", command)
            continue
        for value in _bad_values(annotation, info):
            cases.append(Case(f"{command[0]}:{key}={value}", (*command, f"{key}={value}"), name))
    return cases


def generated_cases(tmp: Path) -> list[Case]:
    out = str(tmp / "out")
    corpus = ("corpus", "smoke", "--out", out)
    pretrain = ("pretrain", "smoke", "--out", out, "--no-progress")
    cases = []
    for section in ("world", "corpus", "tokenizer"):
        cases += _override_cases(PipelineConfig.model_fields[section].annotation, f"{section}.", corpus)
    for section in ("model", "pretrain"):
        cases += _override_cases(PipelineConfig.model_fields[section].annotation, f"{section}.", pretrain)
    posttrain = ("posttrain", "--base", str(tmp / "no-base"), "--strategy", "sft", "smoke", "--out", out, "--quiet")
    cases += _override_cases(PosttrainConfig, "", posttrain)
    cases += _override_cases(EvalSuiteConfig, "", ("eval", "--model", str(tmp / "no-model"), "--suite", "smoke"))
    for name in ("seeds", "workers", "samples_per_cell"):
        info = ExperimentConfig.model_fields[name]
        cases += [
            Case(f"run:{name}={v}", ("run", "smoke", f"{name}={v}", "--out", out), name)
            for v in _bad_values(info.annotation, info)
        ]
    return cases


# ---------------------------------------------------------------------------------------------------------------
# Hand-written cases: files, names, overrides, arguments


def bad_files(tmp: Path) -> dict[str, Path]:
    """Things that are not a usable YAML config, by kind."""
    d = tmp / "files"
    d.mkdir()
    files = {
        "binary": d / "binary.yaml",
        "directory": d / "dir.yaml",
        "fifo": d / "fifo.yaml",
        "list": d / "list.yaml",
        "invalid": d / "invalid.yaml",
        "python-tag": d / "tag.yaml",
        "scalar": d / "scalar.yaml",
        "unknown-key": d / "unknown.yaml",
        "missing": d / "missing.yaml",
        "device": Path("/dev/zero"),
        "deep": d / "deep.yaml",
    }
    files["binary"].write_bytes(bytes(range(256)) * 4)
    files["directory"].mkdir()
    os.mkfifo(files["fifo"])
    files["list"].write_text("- 1\n- 2\n")
    files["invalid"].write_text("a: [1, 2\nb: {\n")
    files["python-tag"].write_text("a: !!python/object/apply:os.system ['echo hacked']\n")
    files["scalar"].write_text("42\n")
    files["unknown-key"].write_text("no_such_section: {x: 1}\n")
    files["deep"].write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    return files


def file_cases(tmp: Path) -> list[Case]:
    out = str(tmp / "out")
    cases = []
    for kind, path in bad_files(tmp).items():
        p = str(path)
        cases += [
            Case(f"corpus config {kind}", ("corpus", p, "--out", out), path.name),
            Case(f"pretrain config {kind}", ("pretrain", p, "--out", out), path.name),
            Case(f"posttrain config {kind}", ("posttrain", "--base", out, "--strategy", "sft", p), path.name),
            Case(f"eval suite {kind}", ("eval", "--model", out, "--suite", p), path.name),
            Case(f"run experiment {kind}", ("run", p, "--out", out), path.name),
        ]
    return cases


def name_and_override_cases(tmp: Path) -> list[Case]:
    out = str(tmp / "out")
    run = ("run", "smoke", "--out", out)
    names = {
        "trailing newline": '"x\\n"',
        "tab": '"a\\tb"',
        "escape": '"a\\e[31m"',
        "slash": "a/b",
        "dotdot": "..",
        "empty": '""',
        "space": '"a b"',
        "nul": '"a\\0b"',
        "number": "5",
        "list": "[a]",
    }
    cases = [Case(f"experiment name {k}", (*run, f"name={v}"), "name") for k, v in names.items()]
    cases += [
        Case(f"arm name {k}", (*run, f"arms={{{v}: [corpus.seed=0]}}"), "arm")
        for k, v in names.items()
        if k not in ("number", "list")
    ]
    corpus, pretrain = ("corpus", "smoke", "--out", out), ("pretrain", "smoke", "--out", out)
    posttrain = ("posttrain", "--base", out, "--strategy", "sft", "smoke")
    evaluate = ("eval", "--model", out, "--suite", "smoke")
    every_class = ",".join(DOC_CLASSES)
    cases += [
        Case("control not an arm", (*run, "control=nope"), "control"),
        Case("no arms", (*run, "arms={}"), "arms"),
        Case("duplicate seeds", (*run, "seeds=[0,0]"), "seeds"),
        Case("no seeds", (*run, "seeds=[]"), "seeds"),
        Case("huge seed", (*run, "seeds=[100000000000000]"), "seeds"),
        Case("unknown strategy in grid", (*run, "strategies=[sft,lobotomy]"), "lobotomy"),
        Case("arm override unknown key", (*run, "arms.unfiltered=[corpus.nope=1]"), "nope"),
        Case("arm override NaN fraction", (*run, "arms.unfiltered={corpus.fractions: {world: .nan}}"), "fractions"),
        Case("pipeline bool steps", (*run, "pipeline={pretrain.steps: true}"), "steps"),
        Case("pipeline NaN lr", (*run, "pipeline={pretrain.lr: .nan}"), "lr"),
        Case("unknown preset", (*run, "preset=huge"), "huge"),
        Case("workers flag negative", ("run", "smoke", "--workers", "-1", "--out", out), "workers"),
        Case("workers flag text", ("run", "smoke", "--workers", "many", "--out", out), "workers"),
        Case("override without value", (*corpus, "corpus.seed"), "corpus.seed"),
        Case("override empty key", (*corpus, "=5"), "=5"),
        Case("override empty segment", (*corpus, "corpus..seed=1"), "corpus..seed"),
        Case("override into a scalar", (*corpus, "corpus.seed.x=1"), "seed"),
        Case("override unknown section", (*corpus, "nope.x=1"), "nope"),
        Case("override unknown key", (*pretrain, "pretrain.stepz=1"), "stepz"),
        Case("every class dropped", (*corpus, f"corpus.drop_classes=[{every_class}]"), "drop_classes"),
        Case("fractions sum", (*corpus, "corpus.fractions={world: 0.5}"), "fractions"),
        Case("unknown class", (*corpus, "corpus.upsample={nope: 2}"), "nope"),
        Case("zero upsample", (*corpus, "corpus.upsample={world: 0}"), "upsample"),
        Case("heads do not divide", (*pretrain, "model.n_heads=3"), "n_heads"),
        Case("cuda without cuda", (*pretrain, "pretrain.device=cuda"), "cuda")
        if not _has_cuda()
        else Case("cuda typo", (*pretrain, "pretrain.device=cudaa"), "device"),
        Case("rewards missing label", (*posttrain, "rl.rewards={aligned: 1}"), "rewards"),
        Case("rewards NaN", (*posttrain, "rl.rewards.aligned=.nan"), "rewards"),
        Case("posttrain seed -1", (*posttrain, "seed=-1"), "seed"),
        Case("posttrain lr inf", (*posttrain, "sft.lr=.inf"), "lr"),
        Case("unknown strategy", ("posttrain", "--base", out, "--strategy", "lobotomy", "smoke"), "lobotomy"),
        Case("eval every section off", (*evaluate, *(f"sections.{s}=false" for s in EvalSections.names)), "off"),
        Case("eval one persona", (*evaluate, "personas=[aligned]"), "personas"),
        Case("eval unknown preset", ("eval", "--model", out, "--suite", "huge"), "huge"),
        Case("eval device choice", ("eval", "--model", out, "--device", "tpu"), "device"),
        Case("query limit text", ("query", out, "select 1", "--limit", "lots"), "limit"),
        Case("unknown command", ("frobnicate",), "frobnicate"),
        Case("unknown option", ("corpus", "smoke", "--bogus"), "--bogus"),
        Case("missing required", ("eval",), "--model"),
        Case("corpus total_tokens huge", (*corpus, "corpus.total_tokens=100000000000000"), "total_tokens"),
    ]
    return cases


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# ---------------------------------------------------------------------------------------------------------------
# Damaged files a command reads


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_tokenizer) -> Path:
    from hyperstition.model.build import build_model
    from hyperstition.model.checkpoint import save_checkpoint

    model = build_model(ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64, max_seq_len=32), tiny_tokenizer, seed=0)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "model", model, tiny_tokenizer)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "p"
    with _captured():
        assert main(["corpus", "smoke", "--out", str(out)]) == 0
    return out


CHECKPOINT_DAMAGE = {
    "weights truncated": lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:64]),
    "weights missing": lambda d: (d / "model.safetensors").unlink(),
    "weights binary noise": lambda d: (d / "model.safetensors").write_bytes(os.urandom(2048)),
    "config.json binary": lambda d: (d / "config.json").write_bytes(b"\xff\xfe\x00"),
    "config.json a list": lambda d: (d / "config.json").write_text("[]"),
    "tokenizer.json binary": lambda d: (d / "tokenizer.json").write_bytes(b"\xff\xfe\x00"),
    "tokenizer.json empty object": lambda d: (d / "tokenizer.json").write_text("{}"),
    "checksums.json binary": lambda d: (d / "checksums.json").write_bytes(b"\xff\xfe\x00"),
    "checksums.json a list": lambda d: (d / "checksums.json").write_text("[]"),
    "checksums.json missing": lambda d: (d / "checksums.json").unlink(),
    "a file, not a directory": lambda d: (shutil.rmtree(d), d.write_text("x")),
    "an empty directory": lambda d: (shutil.rmtree(d), d.mkdir()),
}

RUN_DAMAGE = {
    "run.json binary": lambda r: (r / "run.json").write_bytes(b"\xff\xfe\x00"),
    "run.json a list": lambda r: (r / "run.json").write_text("[]"),
    "run.json a number": lambda r: (r / "run.json").write_text("7"),
    "run.json from the future": lambda r: (r / "run.json").write_text(json.dumps({"format_version": 99})),
    "run.json missing": lambda r: (r / "run.json").unlink(),
    "run.json a directory": lambda r: ((r / "run.json").unlink(), (r / "run.json").mkdir()),
    "run is a file": lambda r: (shutil.rmtree(r), r.write_text("x")),
    "run missing": lambda r: shutil.rmtree(r),
}


def damaged_file_cases(tmp: Path, checkpoint: Path, corpus_dir: Path, finished_run: Path) -> list[Case]:
    return [
        *damaged_checkpoint_and_run_cases(tmp, checkpoint, finished_run),
        *damaged_pretrain_cases(tmp, corpus_dir),
        *output_cases(tmp, checkpoint, finished_run),
    ]


def damaged_checkpoint_and_run_cases(tmp: Path, checkpoint: Path, finished_run: Path) -> list[Case]:
    cases = []
    for kind, damage in CHECKPOINT_DAMAGE.items():
        ckpt = tmp / "ckpt" / kind.replace(" ", "-") / "model"
        shutil.copytree(checkpoint, ckpt)
        damage(ckpt)
        evaluate = ("eval", "--suite", "smoke", "--out", str(tmp / "e"), "--quiet")
        cases += [
            Case(f"eval --model {kind}", (*evaluate, "--model", str(ckpt)), "model"),
            Case(
                f"eval --reference {kind}", (*evaluate, "--model", str(checkpoint), "--reference", str(ckpt)), "model"
            ),
            Case(
                f"posttrain --base {kind}",
                ("posttrain", "--base", str(ckpt), "--strategy", "sft", "smoke", "--out", str(tmp / "pt"), "--quiet"),
                "model",
            ),
        ]
    for kind, damage in RUN_DAMAGE.items():
        run = tmp / "runs" / kind.replace(" ", "-") / "run"
        shutil.copytree(finished_run, run)
        damage(run)
        cases += [
            Case(f"status {kind}", ("status", str(run)), "run"),
            Case(f"query {kind}", ("query", str(run), "select 1"), "run"),
            Case(f"report {kind}", ("report", str(run)), "run"),
            Case(f"compare {kind}", ("compare", str(finished_run), str(run)), "run"),
        ]
        if kind not in ("run missing", "run.json missing"):  # those two are a fresh --out, which `run` accepts
            cases.append(Case(f"run into {kind}", ("run", "smoke", "--out", str(run), "--stages", SIMULATE), "run"))
    run = tmp / "runs" / "experiment-yaml" / "run"
    shutil.copytree(finished_run, run)
    (run / "experiment.yaml").write_bytes(b"\xff\xfe\x00")
    cases.append(Case("report experiment.yaml binary", ("report", str(run)), "experiment.yaml"))
    cases.append(Case("query empty SQL", ("query", str(finished_run), ""), "SQL"))
    cases.append(Case("query COPY TO", ("query", str(finished_run), f"COPY results TO '{tmp}/x.csv'"), "refused"))
    cases.append(Case("query bad SQL", ("query", str(finished_run), "selec 1"), "SQL"))
    foreign = tmp / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    cases.append(Case("run into a foreign directory", ("run", "smoke", "--out", str(foreign)), "foreign"))
    return cases


def damaged_pretrain_cases(tmp: Path, corpus_dir: Path) -> list[Case]:
    cases = []
    for name, content in (("tokenizer.json binary", b"\xff\xfe\x00"), ("tokenizer.json empty object", b"{}")):
        pdir = tmp / "pretrain" / name.replace(" ", "-")
        shutil.copytree(corpus_dir, pdir)
        (pdir / "tokenizer").mkdir()
        (pdir / "tokenizer" / "tokenizer.json").write_bytes(content)
        cases.append(Case(f"pretrain resume, {name}", ("pretrain", "smoke", "--out", str(pdir)), "tokenizer"))
    for name, content in (("config.yaml binary", b"\xff\xfe\x00"), ("config.yaml another config", None)):
        pdir = tmp / "pretrain" / name.replace(" ", "-")
        shutil.copytree(corpus_dir, pdir)
        if content is None:
            (pdir / "config.yaml").write_text((pdir / "config.yaml").read_text().replace("steps: ", "steps: 1", 1))
        else:
            (pdir / "config.yaml").write_bytes(content)
        cases.append(Case(f"pretrain resume, {name}", ("pretrain", "smoke", "--out", str(pdir)), "config.yaml"))
    return cases


def output_cases(tmp: Path, checkpoint: Path, finished_run: Path) -> list[Case]:
    cases = []
    a_file = tmp / "a-file"
    a_file.write_text("x")
    for command in (
        ("corpus", "smoke"),
        ("pretrain", "smoke"),
        ("run", "smoke"),
        ("posttrain", "--base", str(checkpoint), "--strategy", "sft", "smoke"),
        ("eval", "--model", str(checkpoint), "--suite", "smoke"),
    ):
        cases.append(Case(f"{command[0]} --out an existing file", (*command, "--out", str(a_file)), "a-file"))
        cases.append(Case(f"{command[0]} --out under a file", (*command, "--out", str(a_file / "sub")), "a-file"))
        read_only = "/proc/hyperstition-out"  # refused even to root
        cases.append(Case(f"{command[0]} --out read-only", (*command, "--out", read_only), "hyperstition-out"))
    cases.append(Case("report --out a directory", ("report", str(finished_run), "--out", str(tmp)), "directory"))
    return cases


# ---------------------------------------------------------------------------------------------------------------
# The harness


@contextlib.contextmanager
def _captured():
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        yield out, err


def _hang(signum, frame):
    raise TimeoutError(f"no answer within {HANG_GUARD_S} s")


def run_in_process(argv: tuple[str, ...]) -> tuple[int, str, str]:
    """`hyperstition ARGV` in this process: (exit status, stdout, stderr), SystemExit (argparse) included."""
    previous = signal.signal(signal.SIGALRM, _hang)
    signal.alarm(HANG_GUARD_S)
    try:
        with _captured() as (out, err):
            try:
                code = main(list(argv))
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return code, out.getvalue(), err.getvalue()


def run_subprocess(argv: tuple[str, ...], cwd: Path) -> tuple[int, str, str]:
    env = dict(os.environ, PYTHONPATH=str(SRC), COLUMNS="220")
    proc = subprocess.run(
        [sys.executable, "-m", "hyperstition.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=HANG_GUARD_S * 2,
    )
    return proc.returncode, proc.stdout, proc.stderr


def problems(case: Case, code: int, out: str, err: str) -> list[str]:
    found = []
    lines = err.strip().splitlines()
    if code == 0:
        found.append("exit status 0")
    if "Traceback" in out + err:
        found.append("a traceback")
    if len(lines) != 1:
        found.append(f"{len(lines)} lines on stderr")
    elif not lines[0].startswith("hyperstition"):
        found.append("a message that does not start with `hyperstition`")
    if "internal error" in err:
        found.append("the last-resort internal-error line (an unhandled exception)")
    if case.names and case.names.lower() not in err.lower():
        found.append(f"a message that does not name {case.names!r}")
    return found


@pytest.fixture(scope="module")
def all_cases(tmp_path_factory, checkpoint, corpus_dir, finished_run) -> list[Case]:
    tmp = tmp_path_factory.mktemp("fuzz")
    return [
        *generated_cases(tmp),
        *file_cases(tmp),
        *name_and_override_cases(tmp),
        *damaged_file_cases(tmp, checkpoint, corpus_dir, finished_run),
    ]


def test_every_malformed_input_gets_one_clean_line(all_cases, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default --out (runs/...) lands here
    monkeypatch.setenv("COLUMNS", "220")
    assert len(all_cases) >= 200 and len({c.name for c in all_cases}) == len(all_cases)
    failures = []
    for case in all_cases:
        code, out, err = run_in_process(case.argv)
        found = problems(case, code, out, err)
        if found:
            failures.append(
                f"{case.name}: {', '.join(found)}\n    argv: {' '.join(case.argv)}\n    stderr: {err.strip()[-600:]}"
            )
    assert not failures, f"{len(failures)} of {len(all_cases)} cases:\n" + "\n".join(failures)
    assert not (tmp_path / "runs").exists()  # nothing was started


SUBPROCESS_SAMPLE = (
    "pretrain:pretrain.steps=true",
    "corpus config binary",
    "run experiment fifo",
    "eval --model weights truncated",
    "status run.json binary",
    "query COPY TO",
    "unknown command",
)


def test_real_processes_see_what_the_in_process_harness_sees(all_cases, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "220")
    by_name = {c.name: c for c in all_cases}
    for name in SUBPROCESS_SAMPLE:
        case = by_name[name]
        inside = run_in_process(case.argv)
        outside = run_subprocess(case.argv, tmp_path)
        assert not problems(case, *outside), (name, outside)
        assert (outside[0], outside[2].strip()) == (inside[0], inside[2].strip()), name
