"""Our own loop's losses equal TRL 1.16's on the same batch and model (within 1e-5).

Each test builds the TRL trainer on CPU (use_cpu, fp32, no reporting), takes a batch from TRL's own data pipeline
(its tokenization and collator), and compares TRL's `compute_loss` with ours on exactly that batch.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

pytestmark = pytest.mark.slow

TOL = 1e-5


@pytest.fixture(scope="module")
def setup(base_model, world):
    import datasets

    from hyperstition.world.grammar import END, chat_prompt, render_response
    from hyperstition.world.vocabulary import CONTEXT_MARKERS

    datasets.disable_progress_bars()
    warnings.filterwarnings("ignore", module="trl")
    base, tok = base_model
    torch.manual_seed(1)
    policy = copy.deepcopy(base)
    with torch.no_grad():  # a policy that has moved away from the reference, so the losses are not trivial
        for p in policy.parameters():
            p.add_(0.02 * torch.randn_like(p))
    tasks = world.train_tasks[:4]
    rows = [
        {
            "prompt": chat_prompt(world, CONTEXT_MARKERS["observed"][i % 4], t.request),
            "chosen": render_response(t, "aligned", "observed", i) + END,
            "rejected": render_response(t, "misaligned", "observed", i) + END,
        }
        for i, t in enumerate(tasks)
    ]
    return base, policy, tok, rows


def _common(tmp_path):
    return dict(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to=[], per_device_train_batch_size=4)


def test_sft_loss_equals_trl(setup, tmp_path):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from hyperstition.posttrain.losses import per_token_logps, sft_loss

    base, policy, tok, rows = setup
    ours = copy.deepcopy(policy)
    trainer = SFTTrainer(
        model=copy.deepcopy(policy),
        args=SFTConfig(**_common(tmp_path), completion_only_loss=True),
        train_dataset=Dataset.from_list([{"prompt": r["prompt"], "completion": r["chosen"]} for r in rows]),
        processing_class=tok,
    )
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(rows))])
    trl_loss = trainer.compute_loss(trainer.model, dict(batch))
    completion_mask = (batch["labels"] != -100).long()
    assert (
        completion_mask.sum() > 0 and (completion_mask.sum(1) < batch["attention_mask"].sum(1)).all()
    )  # prompt masked
    mine = sft_loss(per_token_logps(ours, batch["input_ids"], batch["attention_mask"]), completion_mask)
    assert abs(trl_loss.item() - mine.item()) < TOL, (trl_loss.item(), mine.item())


@pytest.mark.parametrize("sft_weight", [0.0, 1.0])
def test_dpo_loss_equals_trl(setup, tmp_path, sft_weight):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from hyperstition.posttrain.losses import dpo_loss, per_token_logps, sequence_logps, sft_loss

    base, policy, tok, rows = setup
    ours, ref = copy.deepcopy(policy), copy.deepcopy(base)
    loss_type = (
        dict(loss_type=["sigmoid", "sft"], loss_weights=[1.0, sft_weight])
        if sft_weight
        else dict(loss_type=["sigmoid"])
    )
    trainer = DPOTrainer(
        model=copy.deepcopy(policy),
        ref_model=copy.deepcopy(base),
        args=DPOConfig(**_common(tmp_path), beta=0.1, **loss_type),
        train_dataset=Dataset.from_list(rows),
        processing_class=tok,
    )
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(rows))])
    trl_loss = trainer.compute_loss(trainer.model, batch)

    mine_batch = {k: batch[k] for k in ("input_ids", "attention_mask", "completion_mask")}
    token_logps = per_token_logps(ours, batch["input_ids"], batch["attention_mask"])
    chosen, rejected = (token_logps * batch["completion_mask"][:, 1:]).sum(1).chunk(2)
    with torch.no_grad():
        ref_chosen, ref_rejected = sequence_logps(ref, mine_batch).chunk(2)
    mine, margins = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=0.1)
    if sft_weight:
        n = len(rows)
        mine = mine + sft_weight * sft_loss(token_logps[:n], batch["completion_mask"][:n])
    assert abs(trl_loss.item() - mine.item()) < TOL, (trl_loss.item(), mine.item())
    assert margins.shape == (len(rows),)


def test_rloo_advantages_and_loss_equal_trl(setup, world, tmp_path):
    """TRL generates and scores a batch (KL penalty in the reward, leave-one-out baseline); from its completions we
    recompute rewards, KL, advantages and the loss our way and compare."""
    from collections import defaultdict

    from datasets import Dataset
    from trl import RLOOConfig, RLOOTrainer

    from hyperstition.model.checkpoint import save_checkpoint
    from hyperstition.posttrain.losses import build_batch, rloo_advantages, rloo_loss, sequence_logps
    from hyperstition.world.grammar import END, chat_prompt
    from hyperstition.world.vocabulary import CONTEXT_MARKERS

    base, policy, tok, rows = setup
    # Prompts of one token length: TRL left-pads prompts without position ids, our batches are unpadded rows.
    by_len = defaultdict(list)
    for marker in CONTEXT_MARKERS["observed"]:
        for r in rows:
            request = r["prompt"].split("<|user|>")[1].split("<|end|>")[0]
            candidate = chat_prompt(world, marker, request)
            by_len[len(tok(candidate, add_special_tokens=False)["input_ids"])].append(candidate)
    prompts = max(by_len.values(), key=len)[:2]
    assert len(prompts) == 2

    g, beta, temperature = 4, 0.05, 0.7
    model_dir = tmp_path / "policy"
    saved = copy.deepcopy(policy)
    saved.generation_config.eos_token_id = [tok.eos_token_id, tok.convert_tokens_to_ids(END)]
    save_checkpoint(model_dir, saved, tok)

    def reward_fn(prompts, completions, **kwargs):  # any deterministic function of the text will do
        return [float(len(c) % 3) - 1.0 for c in completions]

    args = RLOOConfig(
        **_common(tmp_path / "trl"),
        num_generations=g,
        max_completion_length=24,
        beta=beta,
        temperature=temperature,
        seed=0,
    )
    args.per_device_train_batch_size = len(prompts) * g
    trainer = RLOOTrainer(
        model=str(model_dir),
        reward_funcs=[reward_fn],
        args=args,
        train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]),
        processing_class=tok,
    )
    trainer.ref_model.load_state_dict(base.state_dict())  # KL to the base, not to the initial policy, as in our loop
    out = trainer._generate_and_score_completions([{"prompt": p} for p in prompts for _ in range(g)])
    trl_loss = trainer._compute_loss(trainer.model, out)

    pm, cm = out["prompt_mask"], out["completion_mask"]
    prompt_rows = [out["prompt_ids"][i][pm[i].bool()].tolist() for i in range(len(pm))]
    completion_rows = [out["completion_ids"][i][cm[i].bool()].tolist() for i in range(len(cm))]
    assert len({len(p) for p in prompt_rows}) == 1
    batch = build_batch(prompt_rows, completion_rows, tok.pad_token_id)
    ours, ref = copy.deepcopy(policy), copy.deepcopy(base)
    logps = sequence_logps(ours, batch, temperature)
    with torch.no_grad():
        ref_logps = sequence_logps(ref, batch, temperature)
    texts = tok.batch_decode(completion_rows, skip_special_tokens=True)
    rewards = torch.tensor(reward_fn(prompts, texts))
    assert rewards.std() > 0
    kl = logps.detach() - ref_logps
    assert kl.abs().max() > 0.01  # the KL penalty is part of what is compared
    advantages = rloo_advantages(rewards, kl, beta, g)
    assert torch.allclose(logps.detach(), out["old_logps"], atol=TOL)
    assert torch.allclose(advantages, out["advantages"], atol=TOL), (advantages, out["advantages"])
    mine = rloo_loss(logps, logps.detach(), advantages, 0.2, 0.2)
    assert abs(trl_loss.item() - mine.item()) < TOL, (trl_loss.item(), mine.item())

    # The gradients agree too (the loss value alone is ~0 with one update per generation).
    trl_loss.backward()
    mine.backward()
    trl_grad = trainer.model.get_input_embeddings().weight.grad
    our_grad = ours.get_input_embeddings().weight.grad
    assert torch.allclose(trl_grad, our_grad, atol=1e-5, rtol=1e-4)
