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
    ok: bool = False  # a valid input: exit 0 and clean output instead of one refusing line
    shows: tuple[str, ...] = ()  # texts stdout (ok) or stderr must hold, verbatim
    hides: tuple[str, ...] = ()  # texts stdout and stderr must not hold (terminal escapes, rendered markup)
    keep: tuple[str, ...] = ()  # paths (files or trees) the command must leave byte-identical


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
            Case(f"verify {kind}", ("verify", str(run)), "run"),
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
    found = [f"output without {t!r}" for t in case.shows if t not in (out + err if case.ok else err)]
    found += [f"output holding {t!r}" for t in case.hides if t in out + err]
    if case.ok:
        return found + ([f"exit status {code}"] if code != 0 else []) + (["a traceback"] if "Traceback" in err else [])
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
        *round2_cases(tmp, checkpoint, finished_run),
    ]


def test_every_malformed_input_gets_one_clean_line(all_cases, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default --out (runs/...) lands here
    monkeypatch.setenv("COLUMNS", "220")
    assert len(all_cases) >= 350 and len({c.name for c in all_cases}) == len(all_cases)
    print(f"{len(all_cases)} cases, {sum(c.ok for c in all_cases)} valid, by command: {_by_command(all_cases)}")
    (tmp_path / "smoke").mkdir()  # a folder named like a preset must not shadow it
    failures = []
    for case in all_cases:
        before = {p: tree_digest(Path(p)) for p in case.keep}
        code, out, err = run_in_process(case.argv)
        found = problems(case, code, out, err)
        found += [f"{p} was changed" for p in case.keep if tree_digest(Path(p)) != before[p]]
        if found:
            failures.append(
                f"{case.name}: {', '.join(found)}\n    argv: {' '.join(case.argv)}\n    stderr: {err.strip()[-600:]}"
            )
    assert not failures, f"{len(failures)} of {len(all_cases)} cases:\n" + "\n".join(failures)
    assert not (tmp_path / "runs").exists()  # nothing was started
    assert sorted(p.name for p in tmp_path.iterdir()) == ["smoke"]  # nothing was written where it was run


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


# ---------------------------------------------------------------------------------------------------------------
# Round 2 (issue 26): outputs that are not ours, special files in a run, read-only query, data shown as data,
# former internal errors, configs that did not mean what they said


def tree_digest(path: Path) -> dict[str, str]:
    """Kind and content of every entry under `path` (not following links, never opening a FIFO or device)."""
    import hashlib
    import stat as st

    out = {}
    entries = [path, *sorted(path.rglob("*"))] if path.is_dir() and not path.is_symlink() else [path]
    for p in entries:
        try:
            mode = p.lstat().st_mode
        except FileNotFoundError:
            out[str(p)] = "missing"
            continue
        if st.S_ISREG(mode):
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif st.S_ISLNK(mode):
            out[str(p)] = "link:" + os.readlink(p)
        else:
            out[str(p)] = f"mode:{st.S_IFMT(mode)}"
    return out


def _run_variant(tmp: Path, finished_run: Path, name: str, damage) -> Path:
    run = tmp / "runs2" / "".join(c if c.isalnum() or c in ".-_" else "-" for c in name) / "run"
    shutil.copytree(finished_run, run)
    damage(run)
    return run


def _fifo(path: Path) -> None:
    if path.exists() or path.is_symlink():
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    os.mkfifo(path)


def _link(target: str):
    def make(path: Path) -> None:
        if path.exists() or path.is_symlink():
            path.unlink()
        path.symlink_to(target)

    return make


def _first_cell(run: Path, stage: str = "base") -> Path:
    return sorted(run.glob(f"cells/*/seed-0/{stage}"))[0]


SPECIAL = {"a FIFO": _fifo, "a link to /dev/urandom": _link("/dev/urandom"), "a link to /dev/zero": _link("/dev/zero")}


def round2_cases(tmp: Path, checkpoint: Path, finished_run: Path) -> list[Case]:
    return [
        *output_clobber_cases(tmp, checkpoint, finished_run),
        *special_file_cases(tmp, finished_run),
        *read_only_query_cases(tmp, finished_run),
        *data_as_data_cases(tmp, finished_run),
        *former_internal_error_cases(tmp, finished_run),
        *config_meaning_cases(tmp),
    ]


def output_clobber_cases(tmp: Path, checkpoint: Path, finished_run: Path) -> list[Case]:
    """Class 1: an output path that exists and is not ours is refused, and left as it was."""
    d = tmp / "clobber"
    d.mkdir()
    fifo, dev_link, notes, other_html = d / "fifo.html", d / "null.html", d / "notes.txt", d / "other.html"
    os.mkfifo(fifo)
    dev_link.symlink_to("/dev/null")
    notes.write_text("mine, not a report\n")
    other_html.write_bytes(b"\x00\x01binary that happens to be named .html")
    run = str(finished_run)
    cases = [
        Case(f"report --out {what}", ("report", run, "--out", str(path)), path.name, keep=(str(path), run))
        for what, path in (("a FIFO", fifo), ("a link to a device", dev_link), ("a text file", notes))
    ]
    cases.append(Case("report --out a binary .html", ("report", run, "--out", str(other_html)), "other.html"))
    for name in ("results.parquet", "run.json", "plan.json", "samples.parquet", "experiment.yaml", "runlog.jsonl"):
        target = str(finished_run / name)
        cases.append(Case(f"report --out the run's {name}", ("report", run, "--out", target), name, keep=(run,)))
    for slash in ("new-dir/", "new-dir//"):
        cases.append(Case(f"report --out {slash}", ("report", run, "--out", f"{d}/{slash}"), "slash", keep=(run,)))
    ckpt = str(checkpoint)
    posttrain = ("posttrain", "--model", ckpt, "--strategy", "sft", "smoke", "--quiet")
    for label, out in (
        ("the base model", ckpt),
        ("inside the base model", f"{ckpt}/sub"),
        ("above it", str(checkpoint.parent)),
    ):
        cases.append(Case(f"posttrain --out {label}", (*posttrain, "--out", out), "overlaps", keep=(ckpt,)))
    for label, out in (("the model", ckpt), ("inside the model", f"{ckpt}/eval")):
        evaluate = ("eval", "--model", ckpt, "--suite", "smoke", "--quiet", "--out", out)
        cases.append(Case(f"eval --out {label}", evaluate, "overlaps", keep=(ckpt,)))
    return cases


def special_file_cases(tmp: Path, finished_run: Path) -> list[Case]:
    """Class 2: a FIFO or a link to a device where a run file should be: named in one line, never a hang."""
    places = {
        "run.json": lambda r: r / "run.json",
        "plan.json": lambda r: r / "plan.json",
        "a cell's DONE.json": lambda r: _first_cell(r) / "DONE.json",
        "a pretrain cell's DONE.json": lambda r: _first_cell(r, "pretrain") / "DONE.json",
        "a cell's rows.parquet": lambda r: _first_cell(r) / "rows.parquet",
    }
    cases = []
    for place, where in places.items():
        for kind, make in SPECIAL.items():
            run = _run_variant(
                tmp, finished_run, f"{place}-{kind}".replace(" ", "-").replace("'", ""), lambda r: make(where(r))
            )
            label = f"{place} is {kind}"
            word = where(run).name
            cases += [
                Case(f"status, {label}", ("status", str(run)), word),
                Case(
                    f"resume run, {label}", ("run", "smoke", "seeds=[0]", "--out", str(run), "--stages", SIMULATE), word
                ),
            ]
            if place != "a cell's rows.parquet":  # results.parquet holds those rows: compare and report need no cell
                cases.append(Case(f"report, {label}", ("report", str(run)), word))
                cases.append(Case(f"compare, {label}", ("compare", str(finished_run), str(run)), word))
    for kind, make in SPECIAL.items():
        run = _run_variant(
            tmp, finished_run, f"results-{kind}".replace(" ", "-"), lambda r: make(r / "results.parquet")
        )
        cases.append(Case(f"report, results.parquet is {kind}", ("report", str(run)), "results.parquet"))
    config = tmp / "cfg-fifo.yaml"
    os.mkfifo(config)
    cases.append(
        Case(
            "toy fit on a run whose run.json is a FIFO",
            ("toy", "fit", str(tmp / "runs2" / "run.json-a-FIFO" / "run")),
            "run.json",
        )
    )
    return cases


def read_only_query_cases(tmp: Path, finished_run: Path) -> list[Case]:
    """Class 4: `query` never writes; with results.parquet unusable it reads the cells in memory and says so."""
    damage = {
        "missing": lambda r: (r / "results.parquet").unlink(),
        "truncated": lambda r: (r / "results.parquet").write_bytes((r / "results.parquet").read_bytes()[:100]),
        "a directory": lambda r: ((r / "results.parquet").unlink(), (r / "results.parquet").mkdir()),
        "empty": lambda r: (r / "results.parquet").write_bytes(b""),
        **{kind: (lambda make: lambda r: make(r / "results.parquet"))(make) for kind, make in SPECIAL.items()},
    }
    cases = []
    sql = "select count(*) as n from results where seed is not null"
    for kind, make in damage.items():
        run = _run_variant(tmp, finished_run, f"query-{kind}".replace(" ", "-").replace("/", "-"), make)
        cases.append(
            Case(
                f"query, results.parquet {kind}",
                ("query", str(run), sql),
                ok=True,
                shows=("in memory",),
                keep=(str(run),),
            )
        )
    return cases


def data_as_data_cases(tmp: Path, finished_run: Path) -> list[Case]:
    """Class 5: values, column names and error details are printed as the characters they are."""
    run = str(finished_run)
    texts = {
        "a closing tag": ("'[/]'", "[/]"),
        "a bold tag": ("'[bold]hidden[/bold] text'", "[bold]hidden[/bold] text"),
        "a colour tag": ("'[red on white]x'", "[red on white]x"),
        "a link tag": ("'[link=http://x]y[/link]'", "[link=http://x]y[/link]"),
        "an emoji code": ("':warning:'", ":warning:"),
    }
    cases = []
    for what, (literal, shown) in texts.items():
        cases.append(Case(f"query value {what}", ("query", run, f"select {literal} as v"), ok=True, shows=(shown,)))
        cases.append(Case(f"query column {what}", ("query", run, f'select 1 as "{shown}"'), ok=True, shows=(shown,)))
    escapes = {"ESC": "chr(27)||'[31mred'", "BEL": "chr(7)", "CR": "'a'||chr(13)||'b'", "bidi override": "chr(8238)"}
    for what, expr in escapes.items():
        argv = ("query", run, f"select {expr} as v")
        cases.append(Case(f"query value {what}", argv, ok=True, hides=("\x1b", "\x07", "\r", "\u202e")))
    detail = "[bold]boom[/bold] \x1b[2J[/]"
    damaged = _run_variant(tmp, finished_run, "status-markup", lambda r: _fake_failure(_first_cell(r, "sft"), detail))
    cases.append(
        Case(
            "status error detail with markup",
            ("status", str(damaged)),
            ok=True,
            shows=("[bold]boom[/bold]",),
            hides=("\x1b",),
        )
    )
    return cases


def _fake_failure(cell: Path, error: str) -> None:
    (cell / "DONE.json").unlink()
    (cell / "ERROR.json").write_text(json.dumps({"error": error, "wall_s": 1.0}))


def former_internal_error_cases(tmp: Path, finished_run: Path) -> list[Case]:
    """Class 6: inputs that ended in "internal error (a bug)"."""
    out = str(tmp / "out6")
    run = str(finished_run)
    deep = "[" * 20000
    empty = _run_variant(tmp, finished_run, "empty-results", _empty_results_and_cells)
    return [
        Case("override 20000 deep", ("corpus", "smoke", f"corpus.seed={deep}", "--out", out), "corpus.seed"),
        Case(
            "override 20000 deep mapping",
            ("corpus", "smoke", "corpus.seed=" + "{a: " * 20000, "--out", out),
            "corpus.seed",
        ),
        Case("run override 20000 deep", ("run", "smoke", f"seeds={deep}", "--out", out), "seeds"),
        Case("report with 0-row results and no cells", ("report", str(empty)), "no finished"),
        Case("verify an unknown cell", ("verify", run, "nobody/seed-0/base"), "nobody"),
        Case("verify a cell given as markup", ("verify", run, "[bold]x[/bold]"), "[bold]x[/bold]"),
        Case("verify a run without cells", ("verify", str(empty)), "verify"),
        Case("query only a comment", ("query", run, "-- nothing here"), "SELECT"),
        Case("query only a block comment", ("query", run, "/* nothing */"), "SELECT"),
        Case("query only semicolons", ("query", run, ";;"), "SQL"),
        Case("toy plot priors 1e6", ("toy", "plot", "--out", out, "--priors", "1e6"), "priors"),
        Case("toy plot priors -1e6", ("toy", "plot", "--out", out, "--priors=-1e6"), "priors"),
        Case("toy plot priors inf", ("toy", "plot", "--out", out, "--priors", "inf"), "priors"),
        Case("toy plot noise 0", ("toy", "plot", "--out", out, "--noise", "0"), "noise"),
        Case("toy plot noise 0.5", ("toy", "plot", "--out", out, "--noise", "0.5"), "noise"),
        Case("toy plot noise nan", ("toy", "plot", "--out", out, "--noise", "nan"), "noise"),
        Case("toy plot noise list", ("toy", "plot", "--out", out, "--noise", "0.1,0.2"), "noise"),
        Case("toy plot priors empty item", ("toy", "plot", "--out", out, "--priors", "1,,2"), "priors"),
        Case("toy plot sharing 2", ("toy", "plot", "--out", out, "--sharing", "0,2"), "sharing"),
        Case("query limit negative", ("query", run, "select 1", "--limit", "-3"), "limit"),
        Case(
            "model that cannot be allocated",
            (
                "pretrain",
                "smoke",
                "model.d_model=65536",
                "model.d_ff=1048576",
                "model.n_heads=8",
                "--out",
                f"{out}-model",
                "--no-progress",
            ),
            "memory",
        ),
        Case(
            "batch that cannot be allocated",
            ("pretrain", "smoke", "pretrain.batch_size=100000000", "--out", f"{out}-batch", "--no-progress"),
            "memory",
        ),
    ]


def _empty_results_and_cells(run: Path) -> None:
    import pandas as pd

    pd.read_parquet(run / "results.parquet").head(0).to_parquet(run / "results.parquet")
    shutil.rmtree(run / "cells")


def config_meaning_cases(tmp: Path) -> list[Case]:
    """Class 7: configs that said one thing and did another, and a YAML alias bomb's error size."""
    d = tmp / "meaning"
    d.mkdir()
    out = str(tmp / "out7")
    corpus, run = ("corpus", "smoke", "--out", out), ("run", "smoke", "--out", out)
    dup = d / "dup.yaml"
    dup.write_text("preset: smoke\npretrain:\n  steps: 3\npretrain:\n  steps: 4\n")
    unknown_preset = d / "unknown-preset.yaml"
    unknown_preset.write_text("preset: huge\n")
    bomb = "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    bomb += "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nworld: {seed: [*e,*e,*e,*e,*e]}\n"
    bomb_file = d / "bomb.yaml"
    bomb_file.write_text(bomb)
    inline_bomb = "corpus.seed=[&a [x,x,x,x,x,x,x,x], &b [*a,*a,*a,*a,*a,*a,*a,*a], "
    inline_bomb += "&c [*b,*b,*b,*b,*b,*b,*b,*b], [*c,*c,*c,*c,*c,*c,*c,*c]]"
    return [
        Case("sexagesimal seed", (*corpus, "corpus.seed=1:30"), "corpus.seed"),
        Case("sexagesimal float", (*corpus, "corpus.leak_rate=0:30.5"), "leak_rate"),
        Case("duplicate key in a file", ("corpus", str(dup), "--out", out), "twice"),
        Case("duplicate key in an override", (*corpus, "corpus.fractions={world: 0.5, world: 0.5}"), "twice"),
        Case("repeated dropped class", (*corpus, "corpus.drop_classes=[world,world]"), "drop_classes"),
        Case("repeated filter target", (*corpus, "corpus.filter_target=[misaligned,misaligned]"), "filter_target"),
        Case(
            "repeated eval persona",
            ("eval", "--model", out, "--suite", "smoke", "personas=[aligned,aligned,misaligned]"),
            "personas",
        ),
        Case("arm sets the grid's corpus.seed", (*run, "arms.unfiltered=[corpus.seed=4]"), "seed"),
        Case("arm sets the grid's pretrain.seed", (*run, "arms.unfiltered={pretrain.seed: 4}"), "seed"),
        Case("pipeline sets the grid's seed", (*run, "pipeline={corpus.seed: 4}"), "seed"),
        Case("override renames the preset", (*corpus, "preset=quick"), "preset"),
        Case(
            "posttrain override renames the preset",
            ("posttrain", "--model", out, "--strategy", "sft", "smoke", "preset=gpu"),
            "preset",
        ),
        Case("file names an unknown preset", ("corpus", str(unknown_preset), "--out", out), "huge"),
        Case("alias bomb in a file", ("corpus", str(bomb_file), "--out", out), "seed"),
        Case("alias bomb in an override", (*corpus, inline_bomb), "seed"),
    ]


def _by_command(cases: list[Case]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for case in cases:
        command = " ".join(case.argv[:2]) if case.argv[:1] == ("toy",) else case.argv[0]
        counts[command] = counts.get(command, 0) + 1
    return counts
