"""Branching and phased mixtures: a run that continues a trunk's kept training state on another corpus is the run
that switches corpus at that step (bit for bit on CPU), so arms that share a trunk spend equal tokens each."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from hyperstition.config import ConfigError, ModelConfig, PipelineConfig, PretrainConfig
from hyperstition.io import read_jsonl
from hyperstition.model.checkpoint import CheckpointError, intact_checkpoint_info
from hyperstition.train.data import PhasedSampler, SequenceSampler
from hyperstition.train.pretrain import Phase, Start, check_branch, ensure_run_config, state_dir, train_lm

TINY = ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, max_seq_len=32)
CFG = PretrainConfig(steps=20, batch_size=8, lr=1e-2, warmup_steps=4, log_every=5, checkpoint_every=7, threads=1)
AT = 16  # the last 20% of the steps on the second mixture


def _weights(final) -> dict[str, torch.Tensor]:
    return load_file(str(final / "model.safetensors"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_tokenizer, tiny_texts):
    root = tmp_path_factory.mktemp("branch")
    second = [" ".join(reversed(t.split())) for t in tiny_texts]  # another mixture over the same vocabulary
    trunk = train_lm(TINY, CFG, tiny_tokenizer, tiny_texts, root / "trunk", False, start=Start(keep_states=(AT,)))
    start = Start(branch_from=state_dir(root / "trunk", AT))
    branch = train_lm(TINY, CFG, tiny_tokenizer, second, root / "branch", False, start=start)
    phased = Start(then=Phase(AT, second))
    one_run = train_lm(TINY, CFG, tiny_tokenizer, tiny_texts, root / "phased", False, start=phased)
    return root, trunk, branch, one_run


def test_branch_equals_the_phased_run_bit_for_bit(runs):
    root, trunk, branch, one_run = runs
    b, p, t = _weights(branch), _weights(one_run), _weights(trunk)
    assert b.keys() == p.keys()
    assert all(torch.equal(b[k], p[k]) for k in b)
    assert not all(torch.equal(b[k], t[k]) for k in b)  # the second mixture changed the weights
    info = intact_checkpoint_info(branch)
    assert info["step"] == CFG.steps and info["tokens"] == CFG.steps * CFG.batch_size * TINY.max_seq_len


def test_branch_logs_only_its_own_steps_and_keeps_the_trunk_state(runs):
    root = runs[0]
    assert intact_checkpoint_info(state_dir(root / "trunk", AT))["step"] == AT
    assert [m["step"] for m in read_jsonl(root / "branch" / "metrics.jsonl")] == [20]
    assert [m["step"] for m in read_jsonl(root / "phased" / "metrics.jsonl")] == [5, 10, 15, 20]
    assert sorted(p.name for p in (root / "branch" / "checkpoints").glob("step-*")) == ["step-000020"]


def test_branch_from_a_missing_state_is_a_clear_error(tmp_path, tiny_tokenizer, tiny_texts):
    start = Start(branch_from=state_dir(tmp_path / "nowhere", AT))
    with pytest.raises(CheckpointError, match="no intact training state"):
        train_lm(TINY, CFG, tiny_tokenizer, tiny_texts, tmp_path / "b", False, start=start)


def test_branch_must_share_the_trunks_model_and_loop(tmp_path):
    trunk = PipelineConfig(pretrain={"steps": 20})
    ensure_run_config(trunk, tmp_path)
    check_branch(trunk.model_copy(update={"corpus": trunk.corpus.model_copy(update={"order": "shuffled"})}), tmp_path)
    check_branch(PipelineConfig(pretrain={"steps": 20, "threads": 3}), tmp_path)  # runtime knobs may differ
    with pytest.raises(ConfigError, match="pretrain.steps"):
        check_branch(PipelineConfig(pretrain={"steps": 30}), tmp_path)


def test_phased_sampler_switches_and_resumes_from_its_state():
    def make():
        return PhasedSampler(SequenceSampler(5, 2, seed=1), SequenceSampler(3, 2, seed=1), switch=3, offset=5)

    sampler = make()
    served = [sampler.next_indices().tolist() for _ in range(3)]
    assert all(0 <= i < 5 for batch in served for i in batch)
    state = sampler.state_dict()
    later = [sampler.next_indices().tolist() for _ in range(4)]
    assert all(5 <= i < 8 for batch in later for i in batch)
    resumed = make()
    resumed.load_state_dict(state)
    assert [resumed.next_indices().tolist() for _ in range(4)] == later
