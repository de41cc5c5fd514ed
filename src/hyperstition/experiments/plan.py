"""Planning a grid: the jobs of every (arm, seed), dependencies first, each with the hash of its resolved configs.

Jobs per (arm, seed):  `pretrain`  ->  `base` (evaluation of the pretrained model)
                                  ->  one post-training job per strategy (`sft`, `dpo`, ...)

A job's `config_hash` covers its resolved configs (what the stage receives: editing a preset file in place changes
it, so the cell is stale) and its dependencies' hashes. Run directories written before that covered the
experiment's own words for the eval suite and post-training config instead; `legacy_hash` recomputes that, so
`stale.py` can migrate their finished cells once.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import replace
from typing import Any

from ..analysis.config import DEFAULT_EVAL_SUITE, ExperimentConfig, pipeline_config, posttrain_config
from ..schema import BASE_STRATEGY
from .jobs import EvalJob, Job, PosttrainJob, PretrainJob


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _job_hash(kind: str, params: dict, deps: list[str]) -> str:
    return _hash({"kind": kind, "params": params, **({"deps": deps} if deps else {})})


def cell_dir(arm: str, seed: int) -> str:
    return f"cells/{arm}/seed-{seed}"


def plan_jobs(exp: ExperimentConfig) -> list[Job]:
    """All jobs of the grid, dependencies before dependents, grouped by (arm, seed)."""
    jobs: list[Job] = []
    for seed in exp.seeds:
        for arm in exp.arms:
            jobs += _cell_jobs(exp, arm, seed)
    return jobs


def _cell_jobs(exp: ExperimentConfig, arm: str, seed: int) -> list[Job]:
    cfg = pipeline_config(exp, arm, seed)
    base, name = cell_dir(arm, seed), f"{arm}/seed-{seed}"
    pre = PretrainJob(f"{name}/pretrain", arm, seed, None, f"{base}/pretrain", (), cfg)
    pre_hash = _job_hash(pre.kind, pre.params(), [])
    jobs: list[Job] = [replace(pre, config_hash=pre_hash, legacy_hash=pre_hash)]  # always the resolved pipeline
    base_path = f"{base}/{BASE_STRATEGY}"
    ev = EvalJob(f"{name}/{BASE_STRATEGY}", arm, seed, BASE_STRATEGY, base_path, (pre.id,), cfg, suite=exp.eval_suite)
    legacy_ev = {"pipeline": ev.params()["pipeline"], "suite": _legacy_suite_words(exp)}
    jobs.append(_hashed(ev, ev.params(), legacy_ev, pre_hash))
    for strategy in exp.strategies:
        pt_cfg = posttrain_config(exp, seed)
        pt = PosttrainJob(
            f"{name}/{strategy}", arm, seed, strategy, f"{base}/{strategy}", (pre.id,), cfg, posttrain=pt_cfg
        )
        legacy_pt = {**pt.params(), "posttrain": _legacy_posttrain_words(exp, seed)}
        jobs.append(_hashed(pt, pt.params(), legacy_pt, pre_hash))
    return jobs


def _hashed(job: Job, params: dict, legacy_params: dict, pre_hash: str) -> Job:
    return replace(
        job,
        config_hash=_job_hash(job.kind, params, [pre_hash]),
        legacy_hash=_job_hash(job.kind, legacy_params, [pre_hash]),
    )


def job_record(job: Job) -> dict:
    """What plan.json and job.json say about a job (its configs are in job.json's `params`)."""
    return {
        "id": job.id,
        "kind": job.kind,
        "arm": job.arm,
        "seed": job.seed,
        "strategy": job.strategy,
        "path": job.path,
        "deps": list(job.deps),
        "config_hash": job.config_hash,
    }


# ---------------------------------------------------------------------------------------------------------------
# Run directories written before resolved-config hashing: their cells' hashes covered these words


def _legacy_suite_words(exp: ExperimentConfig) -> dict[str, Any]:
    return {"source": exp.eval, "overrides": list(exp.eval_overrides)}


def _legacy_posttrain_words(exp: ExperimentConfig, seed: int) -> dict[str, Any]:
    spec = exp.posttrain_preset
    data = {"preset": spec} if isinstance(spec, str) else copy.deepcopy(spec)
    data["seed"] = seed
    curve = data.get("curve") if isinstance(data.get("curve"), dict) else {}
    data["curve"] = {**curve, "eval_suite": exp.eval or DEFAULT_EVAL_SUITE, "eval_overrides": list(exp.eval_overrides)}
    return data
