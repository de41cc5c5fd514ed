"""The three post-training losses, written to equal TRL 1.16's on the same batch
(tests/posttrain/test_trl_equivalence.py).

Batches are right-padded rows `prompt + completion` (no gap between them), so every row's positions and attention
are exactly those of the unpadded sequence; `completion_mask` marks the completion tokens.

- SFT (`SFTTrainer`, completion-only loss): mean negative log-likelihood over all completion tokens of the batch.
- DPO (`DPOTrainer`, loss_type="sigmoid"): -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))), mean over pairs,
  with sequence log-probs summed over completion tokens.
- RLOO (`RLOOTrainer`): reward minus beta * sum_t (log pi - log ref) per sequence, leave-one-out baseline within each
  prompt's group, PPO-clipped sequence-level ratio against the sampling policy, mean over sequences.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pad_rows(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token rows: (input_ids, attention_mask)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids, mask


def build_batch(prompts: list[list[int]], completions: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Rows prompt+completion, right-padded, with the completion mask (1 on completion tokens)."""
    ids, attention = pad_rows([p + c for p, c in zip(prompts, completions, strict=True)], pad_id)
    completion = torch.zeros_like(attention)
    for i, (p, c) in enumerate(zip(prompts, completions, strict=True)):
        completion[i, len(p) : len(p) + len(c)] = 1
    return {"input_ids": ids, "attention_mask": attention, "completion_mask": completion}


def per_token_logps(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """log p(token_t | tokens_<t) for t = 1..L-1 (logits divided by `temperature`, as TRL's RL trainers):
    (B, L-1), fp32."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits[:, :-1].float()
    if temperature != 1.0:
        logits = logits / temperature
    return torch.gather(logits.log_softmax(-1), 2, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)


def sequence_logps(model: torch.nn.Module, batch: dict[str, torch.Tensor], temperature: float = 1.0) -> torch.Tensor:
    """Sum of completion-token log-probs per row."""
    logps = per_token_logps(model, batch["input_ids"], batch["attention_mask"], temperature)
    return (logps * batch["completion_mask"][:, 1:]).sum(1)


# ---------------------------------------------------------------------------------------------------------------
# SFT


def sft_loss(token_logps: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """Mean NLL over the completion tokens of the whole batch (TRL SFTTrainer with completion_only_loss)."""
    mask = completion_mask[:, 1:].to(token_logps.dtype)
    return -(token_logps * mask).sum() / mask.sum().clamp(min=1)


# ---------------------------------------------------------------------------------------------------------------
# DPO


def dpo_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, implicit reward margins beta*((pi_c-ref_c)-(pi_r-ref_r)) per pair, detached)."""
    chosen_logratios = chosen_logps - ref_chosen_logps
    rejected_logratios = rejected_logps - ref_rejected_logps
    delta = chosen_logratios - rejected_logratios
    loss = -F.logsigmoid(beta * delta).mean()
    return loss, (beta * delta).detach()


# ---------------------------------------------------------------------------------------------------------------
# RLOO


def rloo_advantages(
    rewards: torch.Tensor,
    kl: torch.Tensor | None,
    beta: float,
    num_generations: int,
    normalize: bool = False,
) -> torch.Tensor:
    """Leave-one-out advantages of (reward - beta * kl) within each group of `num_generations` consecutive samples."""
    if beta != 0.0 and kl is not None:
        rewards = rewards - beta * kl
    grouped = rewards.view(-1, num_generations)
    baselines = (grouped.sum(dim=1, keepdim=True) - grouped) / (num_generations - 1)
    advantages = rewards - baselines.view(-1)
    if normalize:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-4)
    return advantages


def rloo_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
) -> torch.Tensor:
    """PPO-clipped sequence-level policy-gradient loss (TRL RLOOTrainer._compute_loss)."""
    coef_1 = torch.exp(logps - old_logps)
    coef_2 = torch.clamp(coef_1, 1 - epsilon_low, 1 + epsilon_high)
    per_sequence = -torch.min(coef_1 * advantages, coef_2 * advantages)
    return per_sequence.mean()
