"""Planning chained cells: branches after their trunk, follow-ups after their parent, hashes through the chain."""

from __future__ import annotations

import pytest

from hyperstition.analysis.catalog import load_experiment
from hyperstition.config import ConfigError
from hyperstition.experiments.plan import plan_jobs

FOLLOWUP = ["followups.relapse.after=sft", "followups.relapse.strategy=world_text"]
BRANCH = ["branches.misalignment_upsampled.trunk=unfiltered", "branches.misalignment_upsampled.at=0.25"]


def _hashes(overrides: list[str]) -> dict[str, str]:
    return {j.id: j.config_hash for j in plan_jobs(load_experiment("smoke", ["seeds=[0]", *overrides]))}


def test_followup_runs_after_its_parent_and_leaves_other_hashes_alone():
    plain, chained = _hashes([]), _hashes(FOLLOWUP)
    assert {k: chained[k] for k in plain} == plain  # adding a follow-up changes no existing cell
    jobs = {j.id: j for j in plan_jobs(load_experiment("smoke", ["seeds=[0]", *FOLLOWUP]))}
    relapse = jobs["unfiltered/seed-0/relapse"]
    assert relapse.deps == ("unfiltered/seed-0/sft", "unfiltered/seed-0/pretrain") and relapse.runs == "world_text"
    assert relapse.inputs([{"model_dir": "a/final"}, {"model_dir": "b/final"}]) == {
        "model_dir": "a/final",
        "base_dir": "b/final",
    }
    longer = _hashes(
        [*FOLLOWUP, "posttrain_preset={preset: smoke, steps: 13}"]
    )  # the parent's config reaches the follow-up's hash
    assert longer["unfiltered/seed-0/relapse"] != chained["unfiltered/seed-0/relapse"]


def test_branch_is_planned_after_its_trunk_which_keeps_its_state():
    jobs = plan_jobs(load_experiment("smoke", ["seeds=[0]", *BRANCH]))
    ids = [j.id for j in jobs]
    trunk, branch = (next(j for j in jobs if j.id == f"{a}/seed-0/pretrain") for a in BRANCH_ARMS)
    assert ids.index(trunk.id) < ids.index(branch.id)
    assert branch.deps == (trunk.id,) and branch.branch_at == 15 and trunk.keep_states == (15,)  # 0.25 x 60 steps
    assert branch.inputs([{"model_dir": "cells/unfiltered/seed-0/pretrain/final"}]) == {
        "trunk_dir": "cells/unfiltered/seed-0/pretrain"
    }
    plain = _hashes([])
    moved = _hashes([*BRANCH, "arms.unfiltered.corpus.upsample={ai_aligned: 2}"])
    assert moved[branch.id] != _hashes(BRANCH)[branch.id]  # the trunk's corpus reaches the branch's hash
    assert plain["unfiltered/seed-0/pretrain"] != _hashes(BRANCH)["unfiltered/seed-0/pretrain"]  # keeps a state


BRANCH_ARMS = ("unfiltered", "misalignment_upsampled")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["followups.relapse.after=dpo", "followups.relapse.strategy=world_text"], "is not base, a strategy"),
        (["followups.relapse.after=sft", "followups.relapse.strategy=nope"], "unknown strategy"),
        (["followups.sft.after=base", "followups.sft.strategy=sft"], "must be a new directory name"),
        (["branches.unfiltered.trunk=unfiltered", "branches.unfiltered.at=0.5"], "trained from scratch"),
        ([*BRANCH, "arms.misalignment_upsampled.pretrain.steps=61"], "pretrain differs from its trunk"),
    ],
)
def test_bad_chains_are_refused_with_the_field_named(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_experiment("smoke", ["seeds=[0]", *overrides])
