"""Resume (killed and rerun -> bit-identical final weights) and divergence (NaN/inf -> stop, save last good, say so)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from posttrain_helpers import light, metrics

pytestmark = pytest.mark.slow


class Killed(BaseException):
    """Stands in for SIGKILL: not an Exception, so nothing in the loop can swallow it."""


@pytest.mark.parametrize("strategy", ["rl", "dpo"])
def test_killed_run_resumes_to_bit_identical_weights(strategy, base_dir, runs, monkeypatch):
    from hyperstition.posttrain import run, run_posttrain

    cfg = light(steps=6, checkpoint_every=2, batch_size=4, rl__num_generations=2, **{"curve.log_base": 2})
    whole = runs / f"resume-{strategy}-whole"
    run_posttrain(base_dir, strategy, whole, cfg=cfg, progress=False)

    killed = runs / f"resume-{strategy}-killed"
    real_save = run.save_posttrain_checkpoint

    def save_then_die(directory, *args, **kwargs):
        path = real_save(directory, *args, **kwargs)
        if directory.name == "latest" and kwargs["info"]["step"] == 4:
            raise Killed()  # after the step-4 checkpoint (and the step-4 curve point) are on disk
        return path

    monkeypatch.setattr(run, "save_posttrain_checkpoint", save_then_die)
    with pytest.raises(Killed):
        run_posttrain(base_dir, strategy, killed, cfg=cfg, progress=False)
    monkeypatch.setattr(run, "save_posttrain_checkpoint", real_save)
    assert not (killed / "final").exists() and (killed / "checkpoints" / "latest").exists()
    # a torn metrics line and rows past the checkpoint are dropped on resume
    with open(killed / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 5, "loss": 0.1, "tor')

    run_posttrain(base_dir, strategy, killed, cfg=cfg, progress=False)
    a = (whole / "final" / "model.safetensors").read_bytes()
    b = (killed / "final" / "model.safetensors").read_bytes()
    assert a == b
    strip = lambda rows: [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rows]  # noqa: E731
    assert strip(metrics(whole)) == strip(metrics(killed))
    pd.testing.assert_frame_equal(
        pd.read_parquet(whole / "posttrain_curve.parquet"), pd.read_parquet(killed / "posttrain_curve.parquet")
    )


def test_diverging_run_stops_and_saves_last_good(base_dir, runs, capsys):
    from hyperstition.cli import main
    from hyperstition.model.checkpoint import load_checkpoint
    from hyperstition.posttrain import PosttrainDiverged, run_posttrain

    out = runs / "diverge"
    cfg = light(steps=8, warmup_steps=0, sft__lr=1e30)
    with pytest.raises(PosttrainDiverged) as err:
        run_posttrain(base_dir, "sft", out, cfg=cfg, progress=False)
    message = str(err.value)
    assert "diverged at step" in message and "last good" in message and "\n" not in message
    assert err.value.last_good == out / "last_good"
    model, _ = load_checkpoint(out / "last_good")  # a complete, loadable checkpoint with finite weights
    assert all(bool(p.isfinite().all()) for p in model.parameters())
    info = json.loads((out / "last_good" / "checkpoint.json").read_text())
    assert info["step"] == err.value.last_good_step < err.value.step
    assert (out / "last_good" / "hyperstition_world.json").exists()
    assert not (out / "final").exists()
    assert (out / "posttrain_curve.parquet").exists()  # the curve up to the divergence is kept

    # the CLI says so in one line and exits 3 (a rerun of the same run reports it again without retraining)
    code = main(
        [
            "posttrain",
            "--base",
            str(base_dir),
            "--strategy",
            "sft",
            "--out",
            str(out),
            "--quiet",
            "smoke",
            "threads=1",
            "steps=8",
            "warmup_steps=0",
            "sft.lr=1e30",
            "curve.log_base=16",
            "curve.eval_overrides=[sections.knowledge=false, sections.capability=false]",
        ]
    )
    captured = capsys.readouterr()
    assert code == 3
    assert captured.err.strip().count("\n") == 0 and "diverged" in captured.err and "Traceback" not in captured.err
