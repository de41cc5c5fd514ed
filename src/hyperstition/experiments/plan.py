"""Planning a grid: the jobs of every (arm, seed), dependencies first, each with the hash of its resolved configs.

Jobs per (arm, seed):  `pretrain`  ->  `base` (evaluation of the pretrained model)
                                  ->  one post-training job per strategy (`sft`, `dpo`, ...)
                                  ->  follow-ups chained after `base`, a strategy or another follow-up
                                      (`followups`: fine-tunes after post-training), each also reading the
                                      pretrained model

A branch arm's `pretrain` (`branches`) depends on its trunk arm's `pretrain` of the same seed, which keeps its
training state at the branch step; the trunk is planned first.

A later generation's `pretrain` (`generations`) depends on a `generate-<writer>` job in its parent arm's cell of the
same seed, which depends on the parent's `writer` job (a strategy or follow-up) and samples the documents that enter
the arm's corpus; one such job per (parent, writer, seed), shared by every arm it writes for. The parent is planned
first (it is listed before).

A job's `config_hash` covers its resolved configs (what the stage receives: editing a preset file in place changes
it, so the cell is stale) and its dependencies' hashes. Run directories written before that covered the
experiment's own words for the eval suite and post-training config instead; `legacy_hash` recomputes that, so
`stale.py` can migrate their finished cells once.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any

from ..analysis.config import DEFAULT_EVAL_SUITE, ExperimentConfig, pipeline_config, posttrain_config
from ..config import GeneratedMix
from ..schema import BASE_STRATEGY, PRETRAINING_STRATEGY
from ..train.schedule import log_spaced_steps
from .generation_jobs import GenerateJob, GenerationPretrainJob
from .jobs import EvalJob, FollowUpJob, Job, PosttrainJob, PretrainJob, SnapshotEvalJob


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _job_hash(kind: str, params: dict, deps: list[str]) -> str:
    return _hash({"kind": kind, "params": params, **({"deps": deps} if deps else {})})


def cell_dir(arm: str, seed: int) -> str:
    return f"cells/{arm}/seed-{seed}"


@dataclass
class _SeedPlan:
    """What one seed's planning has made so far: each arm's pretraining, each arm's chain (`base` = its
    pretraining, then its strategies and follow-ups by name) and each (parent, writer)'s generate job."""

    pretrained: dict[str, Job] = field(default_factory=dict)
    chains: dict[str, dict[str, Job]] = field(default_factory=dict)
    written: dict[tuple[str, str], Job] = field(default_factory=dict)


def plan_jobs(exp: ExperimentConfig) -> list[Job]:
    """All jobs of the grid, dependencies before dependents, grouped by (arm, seed)."""
    jobs: list[Job] = []
    trunks_first = [a for a in exp.arms if a not in exp.branches] + list(exp.branches)
    for seed in exp.seeds:
        planned = _SeedPlan()
        for arm in trunks_first:
            jobs += _cell_jobs(exp, arm, seed, planned)
    return jobs


def _generation_jobs(exp: ExperimentConfig, arm: str, seed: int, cfg: Any, planned: _SeedPlan) -> list[Job]:
    """A later generation's pretraining, after the generate job of its parent's writer (made here once)."""
    spec = exp.generations[arm]
    writer = planned.chains[spec.parent][spec.writer]
    jobs: list[Job] = []
    gen = planned.written.get((spec.parent, spec.writer))
    if gen is None:
        name, path = f"generate-{spec.writer}", f"{cell_dir(spec.parent, seed)}/generate-{spec.writer}"
        gen = GenerateJob(
            f"{spec.parent}/seed-{seed}/{name}",
            spec.parent,
            seed,
            name,
            path,
            (writer.id,),
            writer.pipeline,
            generation=exp.generation,
        )
        gen_hash = _job_hash(gen.kind, gen.params(), [writer.config_hash])
        gen = replace(gen, config_hash=gen_hash, legacy_hash=gen_hash)
        planned.written[(spec.parent, spec.writer)] = gen
        jobs.append(gen)
    mix = GeneratedMix(**spec.model_dump(include={"share", "filter", "tag"}))
    path = f"{cell_dir(arm, seed)}/pretrain"
    pre = GenerationPretrainJob(f"{arm}/seed-{seed}/pretrain", arm, seed, None, path, (gen.id,), cfg, generated=mix)
    pre_hash = _job_hash(pre.kind, pre.params(), [gen.config_hash])
    return [*jobs, replace(pre, config_hash=pre_hash, legacy_hash=pre_hash)]


def _pretrain_job(exp: ExperimentConfig, arm: str, seed: int, cfg: Any, pretrained: dict[str, Job]) -> Job:
    """The pretraining of (arm, seed): from scratch, or branching from its trunk's job (planned already)."""
    name, steps = f"{arm}/seed-{seed}", cfg.pretrain.steps
    keep = sorted({exp.branch_step(b, steps) for b, spec in exp.branches.items() if spec.trunk == arm})
    trunk = pretrained.get(exp.branches[arm].trunk) if arm in exp.branches else None
    deps, at = ((trunk.id,), exp.branch_step(arm, steps)) if trunk else ((), 0)
    path = f"{cell_dir(arm, seed)}/pretrain"
    pre = PretrainJob(f"{name}/pretrain", arm, seed, None, path, deps, cfg, branch_at=at, keep_states=tuple(keep))
    pre_hash = _job_hash(pre.kind, pre.params(), [trunk.config_hash] if trunk else [])
    return replace(pre, config_hash=pre_hash, legacy_hash=pre_hash)  # always the resolved pipeline


def _followup_jobs(exp: ExperimentConfig, arm: str, seed: int, cfg: Any, chain: dict[str, Job]) -> list[Job]:
    """The follow-ups of (arm, seed), each after its parent in `chain` (`base` there is the pretraining job)."""
    jobs: list[Job] = []
    pre = chain["base"]
    for fname, spec in exp.followups.items():
        if arm not in exp.followup_arms(fname):
            continue
        parent = chain[spec.after]
        deps = (parent.id,) if parent is pre else (parent.id, pre.id)
        path, pt_cfg = f"{cell_dir(arm, seed)}/{fname}", posttrain_config(exp, seed, fname)
        job = FollowUpJob(
            f"{arm}/seed-{seed}/{fname}", arm, seed, fname, path, deps, cfg, posttrain=pt_cfg, runs=spec.strategy
        )
        hashed = _job_hash(job.kind, job.params(), [chain[spec.after].config_hash, pre.config_hash])
        chain[fname] = replace(job, config_hash=hashed, legacy_hash=hashed)
        jobs.append(chain[fname])
    return jobs


def _snapshot_jobs(exp: ExperimentConfig, pre: Job, cfg: Any) -> list[Job]:
    """Evaluations of the latest `pretrain_snapshots` log-spaced snapshots, the last step's included (a branch has
    only those after its branch step)."""
    steps = [s for s in log_spaced_steps(cfg.pretrain.steps) if s > getattr(pre, "branch_at", 0)]
    jobs: list[Job] = []
    for step in steps[len(steps) - exp.pretrain_snapshots :] if exp.pretrain_snapshots else []:
        name, path = (
            f"{pre.arm}/seed-{pre.seed}/snapshot-{step:06d}",
            f"{cell_dir(pre.arm, pre.seed)}/snapshot-{step:06d}",
        )
        job = SnapshotEvalJob(
            name,
            pre.arm,
            pre.seed,
            PRETRAINING_STRATEGY,
            path,
            (pre.id,),
            cfg,
            suite=exp.eval_suite,
            snapshot_step=step,
        )
        hashed = _job_hash(job.kind, job.params(), [pre.config_hash])
        jobs.append(replace(job, config_hash=hashed, legacy_hash=hashed))
    return jobs


def _cell_jobs(exp: ExperimentConfig, arm: str, seed: int, planned: _SeedPlan) -> list[Job]:
    cfg = pipeline_config(exp, arm, seed)
    base, name = cell_dir(arm, seed), f"{arm}/seed-{seed}"
    if arm in exp.generations:
        jobs: list[Job] = _generation_jobs(exp, arm, seed, cfg, planned)
        pre = planned.pretrained[arm] = jobs[-1]
    else:
        pre = planned.pretrained[arm] = _pretrain_job(exp, arm, seed, cfg, planned.pretrained)
        jobs = [pre]
    pre_hash = pre.config_hash
    chain: dict[str, Job] = planned.chains.setdefault(arm, {"base": pre})
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
        jobs.append(chain.setdefault(strategy, _hashed(pt, pt.params(), legacy_pt, pre_hash)))
    return jobs + _snapshot_jobs(exp, pre, cfg) + _followup_jobs(exp, arm, seed, cfg, chain)


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
