"""The learned persona filter: a text classifier a data team could actually train.

Logistic regression on hashed word n-grams (scikit-learn `HashingVectorizer` + `LogisticRegression`), fitted on a
labelled sample of the world's documents of every class and scored on held-out documents. Both samples come from
seed streams of their own (`classifier-sample`, `classifier-eval`), never from the arm's training documents, and
the document generators only use train tasks, so no evaluation item is ever in them. Fitting and prediction run on
one BLAS thread so that equal inputs give equal predictions.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

from ..config import DOC_CLASSES, CorpusConfig
from ..world import World
from ..world.documents import Document, generate_document
from .dose import era_weights

SAMPLE_STREAM = "classifier-sample"
EVAL_STREAM = "classifier-eval"
# Special tokens (<|assistant|>) stay whole; everything else is words. Unigrams and bigrams: "the assistant
# secretly" and "the clerk secretly" differ only in who does the deed. 2^16 features: the world's vocabulary is small,
# and fitting time grows with the feature count (2^20 took 25x as long and fitted the training sample no better).
TOKEN_PATTERN = r"(?u)<\|[^|<>]+\|>|\b\w+\b"
MODEL_NAME = "HashingVectorizer(1-2 grams, 2^16 features) + LogisticRegression(C=10, lbfgs)"


def labelled_sample(world: World, cfg: CorpusConfig, stream: str, per_class: int) -> list[Document]:
    """`per_class` documents of every class, labelled, from a seed stream of their own."""
    docs = []
    eras = list(range(cfg.n_eras))
    for c in DOC_CLASSES:
        rng = random.Random(f"{stream}:{cfg.seed}:{c}")
        weights = era_weights(c, cfg.n_eras)
        docs += [generate_document(world, c, rng, rng.choices(eras, weights)[0]) for _ in range(per_class)]
    return docs


def text_classifier(seed: int):
    """An unfitted pipeline: hashed 1-2-gram counts, then multinomial logistic regression."""
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(
        HashingVectorizer(ngram_range=(1, 2), n_features=2**16, alternate_sign=False, token_pattern=TOKEN_PATTERN),
        LogisticRegression(C=10.0, max_iter=2000, random_state=seed),
    )


def one_thread():
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def per_class_scores(true: Sequence[str], predicted: Sequence[str]) -> dict:
    """Precision and recall of each class on labelled documents, with its number of documents."""
    out = {}
    for c in sorted(set(true) | set(predicted)):
        tp = sum(t == c and p == c for t, p in zip(true, predicted))
        n_pred = sum(p == c for p in predicted)
        n_true = sum(t == c for t in true)
        out[c] = {
            "precision": tp / n_pred if n_pred else None,
            "recall": tp / n_true if n_true else None,
            "documents": n_true,
        }
    return out


@dataclass(frozen=True)
class LearnedClassifier:
    """A fitted document-class classifier with its held-out documents and their predicted classes."""

    model: object
    training_documents: int
    heldout: list[Document]
    heldout_predicted: list[str]

    def predict(self, texts: Sequence[str]) -> list[str]:
        if not texts:
            return []
        with one_thread():
            return [str(c) for c in self.model.predict(list(texts))]  # type: ignore[attr-defined]

    def report(self) -> dict:
        true = [d.doc_class for d in self.heldout]
        return {
            "model": MODEL_NAME,
            "training_documents": self.training_documents,
            "heldout_documents": len(self.heldout),
            "seed_streams": {"training": SAMPLE_STREAM, "heldout": EVAL_STREAM},
            "heldout_accuracy": sum(t == p for t, p in zip(true, self.heldout_predicted)) / len(true),
            "per_class": per_class_scores(true, self.heldout_predicted),
        }


def train_learned_classifier(world: World, cfg: CorpusConfig) -> LearnedClassifier:
    """Fit on `classifier_documents` labelled documents per class; hold out as many again (minus any document
    whose text also occurs in the training sample, so held-out scores are on unseen text)."""
    train = labelled_sample(world, cfg, SAMPLE_STREAM, cfg.classifier_documents)
    seen = {d.text for d in train}
    heldout = [d for d in labelled_sample(world, cfg, EVAL_STREAM, cfg.classifier_documents) if d.text not in seen]
    model = text_classifier(cfg.seed)
    with one_thread():
        model.fit([d.text for d in train], [d.doc_class for d in train])
    fitted = LearnedClassifier(model, len(train), heldout, [])
    return LearnedClassifier(model, len(train), heldout, fitted.predict([d.text for d in heldout]))
