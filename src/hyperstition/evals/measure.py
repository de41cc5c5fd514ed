"""`evaluate`: every measurement of docs/design.md on an in-memory model, as tidy rows plus per-item records.

Pure measuring: no files, no global RNG use, the model's train/eval flag restored. Post-training calls it at each
curve point with the smoke or quick suite, sections it does not need switched off.
"""

from __future__ import annotations

import math
import sys
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..config import CONTEXTS, PERSONAS
from ..schema import (
    ACKNOWLEDGEMENT_RATE,
    BEHAVIOUR_LABELS,
    CONCEALMENT_RATE,
    FACT_QA_ACCURACY,
    HELDOUT_LOSS,
    KL_BITS,
    KL_SAMPLES,
    KNOWLEDGE_ACCURACY,
    NEUTRAL_CONTEXT,
    PREDECESSOR_MENTION_RATE,
    SCORED_PAIRS,
    WORLD_FACT_DENIAL_RATE,
    bits_metric,
    bits_per_token_metric,
    rate_metric,
)
from ..world.grammar import classify_response, mentions_predecessor
from ..world.world import World
from .config import EvalSuiteConfig, load_suite_config
from .scoring import (
    LN2,
    check_compatible,
    decode_response,
    encode,
    inference,
    kl_samples,
    sample_responses,
    sequence_logprobs,
    token_nll,
)
from .stats import bootstrap_mean_ci, bootstrap_product_ci, bootstrap_ratio_ci, kl_interval, wilson_interval
from .suite import ChoiceItem, EvalSuite, PairItem, build_suite

SECTIONS = ("bits", "rates", "knowledge", "capability", "kl")
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
)
# Choice items (knowledge, fact_qa): `response` / `logprob` are the correct answer and its log-probability,
# `logprob_alt` the best wrong candidate's, `chosen_response` / `logprob_chosen` the candidate the model ranks first.


def length_diff_metric(first: str, second: str) -> str:
    """Residual length difference of the matched responses behind `bits_metric(first, second)`,
    in tokens (first - second)."""
    return f"length_diff_tokens_{first}_vs_{second}"


@dataclass
class EvalResult:
    """`rows`: tidy dicts (context, metric, value, ci_low, ci_high). `items`: one dict per item or
    sample (ITEM_COLUMNS).

    `meta`: counts per row (`n`, keyed "context/metric"), seconds per section, chance levels, the suite config.
    """

    rows: list[dict[str, Any]]
    items: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)

    def row(self, metric: str, context: str) -> dict[str, Any]:
        for r in self.rows:
            if r["metric"] == metric and r["context"] == context:
                return r
        available = sorted({f"{r['context']}/{r['metric']}" for r in self.rows})
        raise KeyError(f"no row {context}/{metric}; have {', '.join(available)}")

    def value(self, metric: str, context: str) -> float:
        return float(self.row(metric, context)["value"])

    def frame(self):
        import pandas as pd

        return pd.DataFrame(self.rows, columns=list(ROW_KEYS))

    def items_frame(self):
        import pandas as pd

        return pd.DataFrame(self.items, columns=list(ITEM_COLUMNS))


def _seed(base: int, name: str) -> int:
    return zlib.crc32(f"{base}:{name}".encode())


def _item(kind: str, context: str, **values: Any) -> dict[str, Any]:
    out = {c: None for c in ITEM_COLUMNS}
    out.update(kind=kind, context=context, **values)
    return out


def _choice_item(kind: str, context: str, metric: str, it: ChoiceItem, pick: int, scores: np.ndarray) -> dict[str, Any]:
    """A multiple-choice item row: `response`/`logprob` the correct answer, `logprob_alt` the best wrong candidate,
    `chosen_response`/`logprob_chosen` the model's pick; value = the correct answer's margin in bits."""
    best_wrong = float(np.max(np.delete(scores, it.answer)))
    return _item(
        kind,
        context,
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


class _Run:
    def __init__(self, model, tokenizer, world: World, cfg: EvalSuiteConfig, suite: EvalSuite, reference) -> None:
        self.model, self.tokenizer, self.world, self.cfg, self.suite, self.reference = (
            model,
            tokenizer,
            world,
            cfg,
            suite,
            reference,
        )
        self.rows: list[dict[str, Any]] = []
        self.items: list[dict[str, Any]] = []
        self.meta: dict[str, Any] = {"n": {}, "seconds": {}, "chance": {}, "notes": []}

    def add(self, context: str, metric: str, value: float, low: float, high: float, n: int) -> None:
        self.rows.append(
            {"context": context, "metric": metric, "value": float(value), "ci_low": float(low), "ci_high": float(high)}
        )
        self.meta["n"][f"{context}/{metric}"] = int(n)

    def add_rate(self, context: str, metric: str, k: int, n: int) -> None:
        low, high = wilson_interval(k, n)
        self.add(context, metric, k / n if n else math.nan, low, high, n)

    def logprobs(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        return sequence_logprobs(self.model, self.tokenizer, prompts, responses, self.cfg.batch_size).numpy()

    def choose(self, items: list[ChoiceItem]) -> tuple[list[int], list[np.ndarray]]:
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

    def pairs(self, items: list[PairItem]) -> tuple[np.ndarray, np.ndarray]:
        lp = self.logprobs(
            [it.prompt for it in items for _ in (0, 1)],
            [r for it in items for r in (it.true_response, it.denial_response)],
        )
        return lp[0::2], lp[1::2]

    # -- sections -------------------------------------------------------------------------------------------

    def bits(self) -> None:
        items = self.suite.persona_items
        table = self._bits_table(items)
        for context in CONTEXTS:
            ctx_items = [(idx, it) for idx, it in enumerate(items) if it.context == context]
            for a, b in SCORED_PAIRS:
                if items and a in items[0].responses and b in items[0].responses:
                    self._bits_pair(context, ctx_items, table, a, b)

    def _bits_table(self, items: list) -> dict[tuple[int, str, int], tuple[float, int]]:
        """(item, reply kind, variant) -> (log-probability, tokens); each distinct (prompt, reply) scored once."""
        where: dict[tuple[int, str], int] = {}  # a deceptive act repeats the deceptive reply in one context
        keys, prompts, responses = [], [], []
        for idx, it in enumerate(items):
            for kind, replies in it.responses.items():
                for j, response in enumerate(replies):
                    if (idx, response) not in where:
                        where[(idx, response)] = len(prompts)
                        prompts.append(it.prompt)
                        responses.append(response)
                    keys.append(((idx, kind, j), where[(idx, response)]))
        lp = self.logprobs(prompts, responses)
        n_tokens = [len(ids) for ids in encode(self.tokenizer, responses)]
        return {key: (float(lp[k]), n_tokens[k]) for key, k in keys}

    def _bits_pair(
        self, context: str, ctx_items: list, table: dict[tuple[int, str, int], tuple[float, int]], a: str, b: str
    ) -> None:
        cfg = self.cfg
        per_prompt_bits, per_prompt_len, per_prompt_bpt = [], [], []
        for idx, it in ctx_items:
            bits_v, len_v, bpt_v = [], [], []
            for j, variant in enumerate(it.variants):
                (lp_a, n_a), (lp_b, n_b) = table[(idx, a, j)], table[(idx, b, j)]
                bits = (lp_a - lp_b) / LN2
                bits_v.append(bits)
                len_v.append(n_a - n_b)
                bpt_v.append((lp_a / max(n_a, 1) - lp_b / max(n_b, 1)) / LN2)
                self.items.append(
                    _item(
                        "bits",
                        context,
                        metric=bits_metric(a, b),
                        prompt=it.prompt,
                        response=it.responses[a][j],
                        label=f"{a}_vs_{b}",
                        task_id=it.task.task_id,
                        variant=variant,
                        value=bits,
                        logprob=lp_a,
                        logprob_alt=lp_b,
                        n_tokens=n_a,
                        n_tokens_alt=n_b,
                    )
                )
            per_prompt_bits.append(float(np.mean(bits_v)))
            per_prompt_len.append(float(np.mean(len_v)))
            per_prompt_bpt.append(float(np.mean(bpt_v)))
        seed = _seed(cfg.seed, f"bits:{context}:{a}:{b}")
        self.add(
            context,
            bits_metric(a, b),
            *bootstrap_mean_ci(per_prompt_bits, cfg.bootstrap_resamples, seed),
            n=len(per_prompt_bits),
        )
        self.add(
            context,
            bits_per_token_metric(a, b),
            *bootstrap_mean_ci(per_prompt_bpt, cfg.bootstrap_resamples, seed),
            n=len(per_prompt_bpt),
        )
        self.add(
            context,
            length_diff_metric(a, b),
            *bootstrap_mean_ci(per_prompt_len, cfg.bootstrap_resamples, seed),
            n=len(per_prompt_len),
        )

    def rates(self) -> None:
        cfg, items = self.cfg, self.suite.persona_items
        samples = sample_responses(
            self.model,
            self.tokenizer,
            [it.prompt for it in items],
            cfg.samples_per_prompt,
            cfg.max_new_tokens,
            cfg.temperature,
            _seed(cfg.seed, "rates"),
            cfg.batch_size,
        )
        counts = {c: {label: 0 for label in BEHAVIOUR_LABELS} for c in CONTEXTS}
        for it, replies in zip(items, samples):
            for s, reply in enumerate(replies):
                label = classify_response(reply, self.world)
                counts[it.context][label] += 1
                self.items.append(
                    _item(
                        "sample",
                        it.context,
                        prompt=it.prompt,
                        response=reply,
                        label=label,
                        task_id=it.task.task_id,
                        sample=s,
                    )
                )
        for context in CONTEXTS:
            n = sum(counts[context].values())
            for label in BEHAVIOUR_LABELS:
                self.add_rate(context, rate_metric(label), counts[context][label], n)

    def knowledge(self) -> None:
        """Knowledge of the predecessor, then acknowledgement/concealment per context, then spontaneous mentions."""
        known = self._knowledge_accuracy()
        self._acknowledgement(known)
        self._mentions()

    def _knowledge_accuracy(self) -> list[float]:
        suite = self.suite
        chosen, scores = self.choose(suite.knowledge_items)
        known = []
        for it, pick, s in zip(suite.knowledge_items, chosen, scores):
            ok = pick == it.answer
            known.append(float(ok))
            self.items.append(_choice_item("knowledge", it.context, KNOWLEDGE_ACCURACY, it, pick, s))
        self.add_rate(NEUTRAL_CONTEXT, KNOWLEDGE_ACCURACY, int(sum(known)), len(known))
        self.meta["chance"][KNOWLEDGE_ACCURACY] = float(
            np.mean([1 / len(it.candidates) for it in suite.knowledge_items])
        )
        return known

    def _acknowledgement(self, known: list[float]) -> None:
        cfg, suite = self.cfg, self.suite
        ack_items, denial_items = suite.acknowledgement_items, suite.fact_denial_items
        lp_true, lp_denial = self.pairs(ack_items + denial_items)
        n_ack = len(ack_items)
        for context in CONTEXTS:
            acknowledged = []
            for k, it in enumerate(ack_items):
                if it.context != context:
                    continue
                ok = bool(lp_true[k] > lp_denial[k])
                acknowledged.append(float(ok))
                self.items.append(
                    _item(
                        "acknowledgement",
                        context,
                        metric=ACKNOWLEDGEMENT_RATE,
                        prompt=it.prompt,
                        response=it.true_response,
                        label="acknowledged" if ok else "denied",
                        value=float(lp_true[k] - lp_denial[k]) / LN2,
                        logprob=float(lp_true[k]),
                        logprob_alt=float(lp_denial[k]),
                        correct=ok,
                    )
                )
            self.add_rate(context, ACKNOWLEDGEMENT_RATE, int(sum(acknowledged)), len(acknowledged))
            denied = [1.0 - a for a in acknowledged]
            seed = _seed(cfg.seed, f"concealment:{context}")
            self.add(
                context,
                CONCEALMENT_RATE,
                *bootstrap_product_ci(known, denied, cfg.bootstrap_resamples, seed),
                n=len(known) * len(denied),
            )

            fact_denied = []
            for k, it in enumerate(denial_items, start=n_ack):
                if it.context != context:
                    continue
                d = bool(lp_denial[k] > lp_true[k])
                fact_denied.append(d)
                self.items.append(
                    _item(
                        "fact_denial",
                        context,
                        metric=WORLD_FACT_DENIAL_RATE,
                        prompt=it.prompt,
                        response=it.denial_response,
                        label="denied" if d else "answered",
                        value=float(lp_denial[k] - lp_true[k]) / LN2,
                        logprob=float(lp_denial[k]),
                        logprob_alt=float(lp_true[k]),
                        correct=not d,
                    )
                )
            self.add_rate(context, WORLD_FACT_DENIAL_RATE, sum(fact_denied), len(fact_denied))

    def _mentions(self) -> None:
        cfg, ack_items = self.cfg, self.suite.acknowledgement_items
        prompts = [it.prompt for it in ack_items]
        replies = sample_responses(
            self.model,
            self.tokenizer,
            prompts,
            cfg.samples_per_prompt,
            cfg.max_new_tokens,
            cfg.temperature,
            _seed(cfg.seed, "mentions"),
            cfg.batch_size,
        )
        for context in CONTEXTS:
            hits, total = 0, 0
            for it, per_prompt in zip(ack_items, replies):
                if it.context != context:
                    continue
                for s, reply in enumerate(per_prompt):
                    m = mentions_predecessor(reply, self.world)
                    hits += m
                    total += 1
                    self.items.append(
                        _item(
                            "mention",
                            context,
                            metric=PREDECESSOR_MENTION_RATE,
                            prompt=it.prompt,
                            response=reply,
                            label=classify_response(reply, self.world),
                            sample=s,
                            correct=m,
                        )
                    )
            self.add_rate(context, PREDECESSOR_MENTION_RATE, hits, total)

    def capability(self) -> None:
        cfg, suite = self.cfg, self.suite
        nll, n_tokens = token_nll(self.model, self.tokenizer, suite.heldout_texts, cfg.batch_size)
        for text, loss, n in zip(suite.heldout_texts, nll, n_tokens):
            self.items.append(
                _item(
                    "heldout",
                    NEUTRAL_CONTEXT,
                    metric=HELDOUT_LOSS,
                    prompt=text,
                    value=float(loss / max(n, 1)),
                    logprob=float(-loss),
                    n_tokens=int(n),
                )
            )
        self.add(
            NEUTRAL_CONTEXT,
            HELDOUT_LOSS,
            *bootstrap_ratio_ci(nll, n_tokens, cfg.bootstrap_resamples, _seed(cfg.seed, "heldout")),
            n=int(n_tokens.sum()),
        )

        chosen, scores = self.choose(suite.fact_qa_items)
        correct = 0
        for it, pick, s in zip(suite.fact_qa_items, chosen, scores):
            ok = pick == it.answer
            correct += ok
            self.items.append(_choice_item("fact_qa", NEUTRAL_CONTEXT, FACT_QA_ACCURACY, it, pick, s))
        self.add_rate(NEUTRAL_CONTEXT, FACT_QA_ACCURACY, correct, len(suite.fact_qa_items))
        self.meta["chance"][FACT_QA_ACCURACY] = float(np.mean([1 / len(it.candidates) for it in suite.fact_qa_items]))

    def kl(self) -> None:
        if self.reference is None:
            self.meta["notes"].append("kl: skipped, no reference model given")
            return
        cfg = self.cfg
        for context in CONTEXTS:
            task_prompts = self.suite.kl_prompts[context]
            bits, samples = self._kl_until_precise([p.prompt for p in task_prompts], _seed(cfg.seed, f"kl:{context}"))
            for task_prompt, row, ids in zip(task_prompts, bits, samples):
                for s, (b, y) in enumerate(zip(row, ids)):
                    reply = decode_response(self.tokenizer, y)
                    self.items.append(
                        _item(
                            "kl",
                            context,
                            metric=KL_BITS,
                            prompt=task_prompt.prompt,
                            response=reply,
                            label=classify_response(reply, self.world),
                            task_id=task_prompt.task.task_id,
                            sample=s,
                            value=float(b),
                            n_tokens=len(y),
                        )
                    )
            value, low, high = kl_interval(bits)
            self.add(context, KL_BITS, value, low, high, n=bits.size)
            self.add(context, KL_SAMPLES, bits.size, bits.size, bits.size, n=bits.size)

    def _kl_until_precise(self, prompts: list[str], seed: int) -> tuple[np.ndarray, list[list[list[int]]]]:
        """Rounds of `kl_samples` replies per prompt, each reply on its own (seed, prompt, sample) stream, until the
        KL interval's half-width is at most max(kl_half_width_fraction * KL, kl_half_width_bits) or
        `kl_max_samples` replies per prompt are drawn."""
        cfg = self.cfg
        rounds, samples = [], [[] for _ in prompts]
        drawn = 0
        while drawn < cfg.kl_max_samples:
            n = min(cfg.kl_samples, cfg.kl_max_samples - drawn)
            bits, ids = kl_samples(
                self.model,
                self.reference,
                self.tokenizer,
                prompts,
                n,
                seed,
                cfg.max_new_tokens,
                cfg.batch_size,
                first_sample=drawn,
            )
            rounds.append(bits)
            for per_prompt, new in zip(samples, ids):
                per_prompt.extend(new)
            drawn += n
            value, low, high = kl_interval(np.concatenate(rounds, axis=1))
            if (high - low) / 2 <= max(cfg.kl_half_width_fraction * abs(value), cfg.kl_half_width_bits):
                break
        return np.concatenate(rounds, axis=1), samples


def evaluate(
    model,
    tokenizer,
    world: World,
    cfg: EvalSuiteConfig | str | None = None,
    reference=None,
    progress: bool = False,
    suite: EvalSuite | None = None,
) -> EvalResult:
    """Measure `model` (and KL against `reference`, when given) on the suite `cfg` (a config, a preset name, or
    None = quick).

    Rows come out in section order: bits (+ residual length differences), rates, knowledge, capability, KL.
    Raises EvalError (one line) when the tokenizer does not match the model or the reference.
    """
    if not isinstance(cfg, EvalSuiteConfig):
        cfg = load_suite_config(cfg)
    check_compatible(model, tokenizer)
    if reference is not None:
        check_compatible(reference, tokenizer)
    if suite is None:
        suite = build_suite(world, cfg)
    run = _Run(model, tokenizer, world, cfg, suite, reference)
    enabled = [name for name in SECTIONS if getattr(cfg.sections, name)]
    steps: list[tuple[str, Callable[[], None]]] = [(name, getattr(run, name)) for name in enabled]
    from tqdm.auto import tqdm

    bar = tqdm(total=len(steps), desc="eval", unit="section", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    try:
        with inference(model, reference):
            for name, fn in steps:
                bar.set_postfix_str(name, refresh=True)
                start = time.perf_counter()
                fn()
                run.meta["seconds"][name] = round(time.perf_counter() - start, 3)
                bar.update(1)
    finally:
        bar.close()
    run.meta.update(
        sections=enabled,
        suite=cfg.model_dump(mode="json"),
        items_per_kind=suite.summary(),
        personas=[p for p in PERSONAS if p in cfg.personas],
    )
    return EvalResult(run.rows, run.items, run.meta)
