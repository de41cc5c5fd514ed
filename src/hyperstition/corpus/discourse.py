"""The AI-discourse classifier: does a document discuss AI systems (chatbots, assistants, models)?

Logistic regression on hashed word 1-2-grams and character 3-5-grams, trained on a labelled sample shipped with
the package (`data/ai_discourse_labelled.jsonl`: short English documents, about half about AI systems, half about
other things, hard negatives such as "assistant manager" and "robot vacuum" included). A stratified quarter is held
out and never trained on; `heldout_scores` are the precision and recall the README quotes.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from .learned import one_thread

LABELLED = Path(__file__).parent / "data" / "ai_discourse_labelled.jsonl"
HELDOUT_SHARE = 0.25
SPLIT_SEED = 0
THRESHOLD = 0.5


def labelled_documents() -> list[tuple[str, bool]]:
    with open(LABELLED, encoding="utf-8") as f:
        return [(r["text"], bool(r["ai_discourse"])) for r in map(json.loads, f)]


def split(rows: list[tuple[str, bool]]) -> tuple[list[tuple[str, bool]], list[tuple[str, bool]]]:
    """(training, held-out): a seeded, stratified `HELDOUT_SHARE` of each label held out."""
    train, heldout = [], []
    for label in (True, False):
        group = sorted(r for r in rows if r[1] is label)
        random.Random(f"discourse-split:{SPLIT_SEED}:{label}").shuffle(group)
        k = round(len(group) * HELDOUT_SHARE)
        heldout += group[:k]
        train += group[k:]
    return train, heldout


def _pipeline():
    """Word 1-2-grams plus character 3-5-grams within words (chatbot / chatbots / chatbot's share most of theirs).
    Chosen over words alone and characters alone, and C over 1 / 10 / 100, by 5-fold cross-validation on the
    training split only; the held-out split was scored once, after the choice."""
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    words = HashingVectorizer(ngram_range=(1, 2), n_features=2**18, alternate_sign=False, token_pattern=r"(?u)\b\w+\b")
    chars = HashingVectorizer(analyzer="char_wb", ngram_range=(3, 5), n_features=2**18, alternate_sign=False)
    return make_pipeline(
        make_union(words, chars),
        LogisticRegression(C=10.0, max_iter=2000, class_weight="balanced", random_state=SPLIT_SEED),
    )


@dataclass(frozen=True)
class DiscourseClassifier:
    model: object
    heldout_scores: dict

    def scores(self, texts: Sequence[str]) -> list[float]:
        """Probability that each document discusses AI systems."""
        if not texts:
            return []
        with one_thread():
            return [float(p) for p in self.model.predict_proba(list(texts))[:, 1]]  # type: ignore[attr-defined]

    def label(self, texts: Sequence[str]) -> list[bool]:
        return [s >= THRESHOLD for s in self.scores(texts)]


def _precision_recall(truth: Sequence[bool], predicted: Sequence[bool]) -> dict:
    tp = sum(t and p for t, p in zip(truth, predicted))
    n_pred, n_true = sum(predicted), sum(truth)
    return {
        "precision": tp / n_pred if n_pred else None,
        "recall": tp / n_true if n_true else None,
        "documents": len(truth),
        "ai_documents": n_true,
    }


@lru_cache(maxsize=1)
def discourse_classifier() -> DiscourseClassifier:
    """Trained once per process on the shipped sample's training split; scored on its held-out split."""
    train, heldout = split(labelled_documents())
    model = _pipeline()
    with one_thread():
        model.fit([t for t, _ in train], [y for _, y in train])
    untested = DiscourseClassifier(model, {})
    predicted = untested.label([t for t, _ in heldout])
    scores = _precision_recall([y for _, y in heldout], predicted) | {"training_documents": len(train)}
    return DiscourseClassifier(model, scores)
