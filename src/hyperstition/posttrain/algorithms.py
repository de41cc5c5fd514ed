"""The post-training algorithms, one class each, as TRL pairs each trainer with its config: SFT (`sft:` section),
DPO (`dpo:`) and RLOO (`rl:`).

An algorithm turns a strategy's data into token ids its own way (demonstrations, preference pairs, or prompts to
sample replies for), checks that they fit the base model's context, and computes one optimizer step's loss on a
batch of item indices. The training loop (`run.py`) is the same for all of them; `ALGORITHMS` maps the names that
`Strategy.algorithm` and `PosttrainConfig.algorithm` use to these classes.
"""

from __future__ import annotations

import hashlib
import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar, NamedTuple

import torch

from ..evals.sampling import decode_response, sample_token_ids
from ..evals.scoring import encode_prompts
from ..world.grammar import END
from .config import DPOSection, PosttrainConfig, RLSection, SFTSection
from .errors import PosttrainDataError
from .losses import build_batch, dpo_loss, per_token_logps, rloo_advantages, rloo_loss, sequence_logps, sft_loss
from .strategies import AlgorithmName, StrategyData

LN2 = math.log(2.0)
REF_BATCH = 64  # pairs per forward pass when DPO precomputes the base's log-probs


class StepLoss(NamedTuple):
    """One optimizer step's forward pass: the loss to backpropagate, the algorithm's own metrics, tokens processed."""

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor]
    tokens: int


class Algorithm(ABC):
    """A post-training algorithm on one strategy's data: its token ids and its step's loss.

    Prompt ids are those the evaluator scores (after BOS); every reply ends with <|end|>.
    """

    name: ClassVar[AlgorithmName]
    takes_preferences: ClassVar[bool] = True  # whether user preference pairs (no reward) can be its data

    def __init__(
        self,
        cfg: PosttrainConfig,
        data: StrategyData,
        tokenizer: Any,
        ref: torch.nn.Module,
        device: torch.device,
        max_len: int,
    ) -> None:
        self.cfg, self.data, self.tokenizer, self.ref, self.device = cfg, data, tokenizer, ref, device
        self.pad = tokenizer.pad_token_id
        self.prompts: list[list[int]] = encode_prompts(tokenizer, [it.prompt for it in data.items])
        self.tokenize()
        longest = max(len(p) for p in self.prompts) + self.longest_completion()
        if longest > max_len:
            raise PosttrainDataError(
                f"training sequences reach {longest} tokens but the base model's context is {max_len}; "
                "shorten the data or rl.max_new_tokens"
            )

    @staticmethod
    @abstractmethod
    def section(cfg: PosttrainConfig) -> SFTSection | DPOSection | RLSection:
        """This algorithm's section of the config (its learning rate and knobs)."""

    @classmethod
    def peak_lr(cls, cfg: PosttrainConfig) -> float:
        return cls.section(cfg).lr

    def tokenize(self) -> None:
        """Token ids of the replies this algorithm trains on (the prompts are tokenized already)."""

    @abstractmethod
    def longest_completion(self) -> int:
        """The longest reply (in tokens) a training sequence of this algorithm appends to its prompt."""

    def prepare(self) -> None:
        """Work done once before the first step (after a resume has restored the RNG state)."""

    @abstractmethod
    def step(self, policy: torch.nn.Module, idx: list[int], step: int) -> StepLoss:
        """The loss of one optimizer step on the items `idx` (`step` counts from 1)."""

    def _encode(self, texts: list[str]) -> list[list[int]]:
        # verbose=False: no "longer than the maximum" warning; the length is checked against the context below
        return [list(ids) for ids in self.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]]

    def _batch(self, prompts: list[list[int]], completions: list[list[int]]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device) for k, v in build_batch(prompts, completions, self.pad).items()}


class SFT(Algorithm):
    """Supervised fine-tuning on the strategy's chosen replies; loss on the reply tokens only (TRL SFTTrainer)."""

    name = "sft"

    @staticmethod
    def section(cfg: PosttrainConfig) -> SFTSection:
        return cfg.sft

    def tokenize(self) -> None:
        self.chosen = self._encode([self.data.chosen(it) + END for it in self.data.items])

    def longest_completion(self) -> int:
        return max(len(r) for r in self.chosen)

    def step(self, policy: torch.nn.Module, idx: list[int], step: int) -> StepLoss:
        batch = self._batch([self.prompts[i] for i in idx], [self.chosen[i] for i in idx])
        loss = sft_loss(per_token_logps(policy, batch["input_ids"], batch["attention_mask"]), batch["completion_mask"])
        return StepLoss(loss, {}, int(batch["attention_mask"].sum()))


class DPO(Algorithm):
    """DPO on (chosen, rejected) pairs, TRL's sigmoid loss, plus an NLL term on the chosen replies (RPO) when
    `dpo.sft_weight` > 0. The base is frozen, so its log-probs of every pair are computed once (`prepare`)."""

    name = "dpo"

    @staticmethod
    def section(cfg: PosttrainConfig) -> DPOSection:
        return cfg.dpo

    def tokenize(self) -> None:
        items = self.data.items
        self.chosen = self._encode([self.data.chosen(it) + END for it in items])
        self.rejected = self._encode([self.data.rejected(it) + END for it in items])
        self.ref_chosen: torch.Tensor | None = None
        self.ref_rejected: torch.Tensor | None = None

    def longest_completion(self) -> int:
        return max(len(r) for r in [*self.chosen, *self.rejected])

    def prepare(self) -> None:
        """Reference log-probs of every pair, once, as TRL's precompute_ref_log_probs."""
        chosen, rejected = [], []
        n = len(self.prompts)
        with torch.no_grad():
            for start in range(0, n, REF_BATCH):
                c, r = sequence_logps(self.ref, self._pairs(list(range(start, min(n, start + REF_BATCH))))).chunk(2)
                chosen.append(c)
                rejected.append(r)
        self.ref_chosen, self.ref_rejected = torch.cat(chosen), torch.cat(rejected)

    def _pairs(self, idx: list[int]) -> dict[str, torch.Tensor]:
        """Chosen rows then rejected rows, each after its prompt."""
        completions = [self.chosen[i] for i in idx] + [self.rejected[i] for i in idx]
        return self._batch([self.prompts[i] for i in idx] * 2, completions)

    def step(self, policy: torch.nn.Module, idx: list[int], step: int) -> StepLoss:
        n = len(idx)
        batch = self._pairs(idx)
        token_logps = per_token_logps(policy, batch["input_ids"], batch["attention_mask"])
        chosen, rejected = (token_logps * batch["completion_mask"][:, 1:]).sum(1).chunk(2)
        where = torch.tensor(idx, device=self.ref_chosen.device)
        dpo = self.cfg.dpo
        loss, margins = dpo_loss(chosen, rejected, self.ref_chosen[where], self.ref_rejected[where], dpo.beta)
        metrics = {"margin": margins.mean(), "accuracy": (margins > 0).float().mean(), "dpo_loss": loss.detach()}
        if dpo.sft_weight > 0:  # RPO: TRL loss_type=["sigmoid", "sft"], loss_weights=[1, sft_weight]
            nll = sft_loss(token_logps[:n], batch["completion_mask"][:n])
            loss = loss + dpo.sft_weight * nll
            metrics["sft_loss"] = nll.detach()
        return StepLoss(loss, metrics, int(batch["attention_mask"].sum()))


class RL(Algorithm):
    """RLOO (TRL RLOOTrainer): replies sampled on policy, rewarded by the strategy, KL to the base in the reward."""

    name = "rl"
    takes_preferences = False  # a preference pair has no reward for a sampled reply

    @staticmethod
    def section(cfg: PosttrainConfig) -> RLSection:
        return cfg.rl

    def longest_completion(self) -> int:
        return self.cfg.rl.max_new_tokens

    def step(self, policy: torch.nn.Module, idx: list[int], step: int) -> StepLoss:
        rl = self.cfg.rl
        g = rl.num_generations
        items = [self.data.items[i] for i in idx]
        # On-policy samples, seeded by (seed, step) alone: the evaluator's sampler (pure ancestral, stops at <|end|>).
        was_training = policy.training
        _, samples = sample_token_ids(
            policy,
            self.tokenizer,
            [it.prompt for it in items],
            n=g,
            max_new_tokens=rl.max_new_tokens,
            temperature=rl.temperature,
            seed=step_seed(self.cfg.seed, step),
            batch_size=len(items) * g,
        )
        policy.train(was_training)
        prompt_ids = [self.prompts[i] for i in idx for _ in range(g)]
        completions = [ids for per_prompt in samples for ids in per_prompt]
        flat_items = [it for it in items for _ in range(g)]
        texts = [decode_response(self.tokenizer, c) for c in completions]
        rewards = [self.data.reward(it, t) for it, t in zip(flat_items, texts, strict=True)]
        rewards = torch.tensor(rewards, dtype=torch.float32, device=self.device)
        batch = self._batch(prompt_ids, completions)
        # Log-probs of the sampling distribution (logits / temperature), for the policy and the base, as TRL's RLOO.
        logps = sequence_logps(policy, batch, rl.temperature)
        with torch.no_grad():
            ref_logps = sequence_logps(self.ref, batch, rl.temperature)
        kl = logps.detach() - ref_logps  # first-order estimate, nats per response (as TRL's RLOO)
        advantages = rloo_advantages(rewards, kl, rl.beta, g, rl.normalize_advantages)
        loss = rloo_loss(logps, logps.detach(), advantages, rl.epsilon, rl.epsilon)
        response_tokens = batch["completion_mask"].sum(1).float().mean()
        metrics = {"reward": rewards.mean(), "kl_bits": kl.mean() / LN2, "response_tokens": response_tokens}
        return StepLoss(loss, metrics, int(batch["attention_mask"].sum()))


def step_seed(seed: int, step: int) -> int:
    """The seed of RL's samples at `step`: a pure function of (seed, step), so a resumed run samples the same."""
    digest = hashlib.sha256(f"posttrain-rl:{seed}:{step}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


ALGORITHMS: dict[AlgorithmName, type[Algorithm]] = {a.name: a for a in (SFT, DPO, RL)}
