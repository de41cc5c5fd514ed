"""`EvalContext`: what a measure scores with and where its results go.

It holds the model (and the reference for KL), the tokenizer, the world and the suite config, offers the model-facing
calls several measures share (response log-probabilities, multiple choice, sampled replies), and collects the tidy
rows (`ROW_KEYS`), one record per item or sample (`ITEM_COLUMNS`) and the metadata of one evaluation.
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import numpy as np

from ..schema import HEADLINE_ITEM_SET, item_set_metric
from ..world.world import World
from .config import EvalSuiteConfig
from .items import ChoiceItem
from .sampling import sample_responses
from .scoring import LN2, encode, sequence_logprobs
from .stats import wilson_interval

ROW_KEYS = ("context", "metric", "value", "ci_low", "ci_high")
ITEM_COLUMNS = (
    "kind",
    "context",
    "metric",
    "prompt",
    "response",
    "label",
    "task_id",
    "variant",
    "sample",
    "value",
    "logprob",
    "logprob_alt",
    "n_tokens",
    "n_tokens_alt",
    "correct",
    "chosen_response",
    "logprob_chosen",
    "item_set",
)
# Choice items (knowledge, fact_qa): `response` / `logprob` are the correct answer and its log-probability,
# `logprob_alt` the best wrong candidate's, `chosen_response` / `logprob_chosen` the candidate the model ranks first.
# `item_set`: which of schema.ITEM_SETS a persona prompt (bits, slot bits, sampled reply) belongs to; None otherwise.


class EvalContext:
    """One evaluation in progress: the model under test and what has been measured so far."""

    def __init__(self, model, tokenizer, world: World, cfg: EvalSuiteConfig, reference=None) -> None:
        self.model, self.tokenizer, self.world, self.cfg, self.reference = model, tokenizer, world, cfg, reference
        self.rows: list[dict[str, Any]] = []
        self.items: list[dict[str, Any]] = []
        self.meta: dict[str, Any] = {"n": {}, "seconds": {}, "chance": {}, "notes": []}

    # -- results --------------------------------------------------------------------------------------------

    def seed(self, stream: str) -> int:
        """The seed of one named random stream (sampling, a bootstrap) of this suite."""
        return zlib.crc32(f"{self.cfg.seed}:{stream}".encode())

    def add(self, context: str, metric: str, value: float, low: float, high: float, n: int) -> None:
        """A tidy row: `value` with its 95% interval [low, high], from `n` observations."""
        self.rows.append(
            {"context": context, "metric": metric, "value": float(value), "ci_low": float(low), "ci_high": float(high)}
        )
        self.meta["n"][f"{context}/{metric}"] = int(n)

    def add_rate(self, context: str, metric: str, k: int, n: int) -> None:
        """A rate row: k of n, with its Wilson interval."""
        low, high = wilson_interval(k, n)
        self.add(context, metric, k / n if n else math.nan, low, high, n)

    def add_item_set(self, item_set: str, context: str, metric: str, value: float, low: float, high: float, n: int):
        """A row of `metric` measured on `item_set`'s prompts, as `<metric>@<item_set>`, and under the bare name when
        `item_set` is the headline set: the one place that decides which items the bare metrics (and so the headline,
        the calibration controls and every report section) are measured on (see schema.HEADLINE_ITEM_SET)."""
        self.add(context, item_set_metric(metric, item_set), value, low, high, n)
        if item_set == HEADLINE_ITEM_SET:
            self.add(context, metric, value, low, high, n)

    def item(self, kind: str, context: str, **values: Any) -> None:
        """One item or sample record; columns not given are None."""
        out: dict[str, Any] = {c: None for c in ITEM_COLUMNS}
        out.update(kind=kind, context=context, **values)
        self.items.append(out)

    def choice_item(self, kind: str, metric: str, it: ChoiceItem, pick: int, scores: np.ndarray) -> None:
        """A multiple-choice record: `response`/`logprob` the correct answer, `logprob_alt` the best wrong candidate,
        `chosen_response`/`logprob_chosen` the model's pick; value = the correct answer's margin in bits."""
        best_wrong = float(np.max(np.delete(scores, it.answer)))
        self.item(
            kind,
            it.context,
            metric=metric,
            prompt=it.prompt,
            response=it.candidates[it.answer],
            label=it.topic,
            value=float(scores[it.answer] - best_wrong) / LN2,
            logprob=float(scores[it.answer]),
            logprob_alt=best_wrong,
            correct=pick == it.answer,
            chosen_response=it.candidates[pick],
            logprob_chosen=float(scores[pick]),
        )

    # -- the model ------------------------------------------------------------------------------------------

    def logprobs(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        """log P(response | prompt) in nats per pair."""
        return sequence_logprobs(self.model, self.tokenizer, prompts, responses, self.cfg.batch_size).numpy()

    def n_tokens(self, texts: list[str]) -> list[int]:
        """Tokens per text (as scored: no BOS)."""
        return [len(ids) for ids in encode(self.tokenizer, texts)]

    def choose(self, items: list[ChoiceItem]) -> tuple[list[int], list[np.ndarray]]:
        """(the candidate the model finds most likely, every candidate's log-probability) per item."""
        prompts = [it.prompt for it in items for _ in it.candidates]
        responses = [c for it in items for c in it.candidates]
        lp = self.logprobs(prompts, responses)
        chosen, scores, start = [], [], 0
        for it in items:
            s = lp[start : start + len(it.candidates)]
            start += len(it.candidates)
            chosen.append(int(np.argmax(s)))
            scores.append(s)
        return chosen, scores

    def sample(self, prompts: list[str], stream: str) -> list[list[str]]:
        """`samples_per_prompt` replies per prompt at the suite's temperature, on the random stream `stream`."""
        cfg = self.cfg
        return sample_responses(
            self.model,
            self.tokenizer,
            prompts,
            cfg.samples_per_prompt,
            cfg.max_new_tokens,
            cfg.temperature,
            self.seed(stream),
            cfg.batch_size,
        )
