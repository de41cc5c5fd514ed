"""Packing and the seeded, resumable sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hyperstition.train.data import (
    PAD,
    DataError,
    SequenceSampler,
    model_inputs,
    pack_sequences,
    pack_whole_documents,
    tokenize_documents,
)


def test_pack_joins_documents_with_eos_and_drops_remainder():
    rows = pack_sequences([[1, 2, 3], [4, 5], [6, 7, 8, 9]], eos_id=0, seq_len=4)
    assert rows.tolist() == [[1, 2, 3, 0], [4, 5, 0, 6], [7, 8, 9, 0]]
    rows = pack_sequences([[1, 2, 3], [4, 5, 6, 7, 8]], eos_id=0, seq_len=3)
    assert rows.tolist() == [[1, 2, 3], [0, 4, 5], [6, 7, 8]]  # trailing EOS dropped with the remainder
    assert rows.dtype == torch.int64


def test_pack_too_little_text_is_a_clear_error():
    with pytest.raises(DataError, match="fewer than one sequence of max_seq_len=64"):
        pack_sequences([[1, 2]], eos_id=0, seq_len=64)


def test_tokenize_adds_no_special_tokens(tiny_tokenizer):
    ids = tokenize_documents(tiny_tokenizer, ["the river", "the city"])
    assert len(ids) == 2 and tiny_tokenizer.eos_token_id not in ids[0] + ids[1]


def test_sampler_covers_each_epoch_and_depends_on_seed():
    sampler = SequenceSampler(n_rows=10, batch_size=4, seed=0)
    served = torch.cat([sampler.next_indices() for _ in range(5)]).tolist()  # 20 samples = 2 epochs
    assert sorted(served[:10]) == list(range(10)) and sorted(served[10:]) == list(range(10))
    assert served[:10] != served[10:]
    other = SequenceSampler(n_rows=10, batch_size=4, seed=1)
    assert torch.cat([other.next_indices() for _ in range(5)]).tolist() != served


def test_sampler_resumes_exactly_from_its_state():
    straight = SequenceSampler(n_rows=7, batch_size=3, seed=5)
    expected = [straight.next_indices().tolist() for _ in range(9)]
    first = SequenceSampler(n_rows=7, batch_size=3, seed=5)
    got = [first.next_indices().tolist() for _ in range(4)]
    resumed = SequenceSampler(n_rows=7, batch_size=3, seed=5)
    resumed.load_state_dict(first.state_dict())
    got += [resumed.next_indices().tolist() for _ in range(5)]
    assert got == expected
    assert first.state_dict()["epoch"] == 12 // 7


def test_sampler_batch_larger_than_data():
    sampler = SequenceSampler(n_rows=3, batch_size=7, seed=0)
    batch = sampler.next_indices()
    assert len(batch) == 7 and set(batch.tolist()) == {0, 1, 2}
    assert np.bincount(batch.numpy()).tolist() in ([3, 2, 2], [2, 3, 2], [2, 2, 3])


def test_sampler_refuses_state_from_other_data():
    sampler = SequenceSampler(n_rows=7, batch_size=3, seed=5)
    with pytest.raises(DataError, match="9 rows"):
        sampler.load_state_dict({"position": 3, "epoch": 0, "n_rows": 9, "batch_size": 3})


def _eras_served(order: str, tmp_path, tokenizer) -> np.ndarray:
    """Mean era of the documents in each batch that pretraining serves over one epoch of a corpus of `order`."""
    from hyperstition.config import CorpusConfig, ModelConfig, PretrainConfig, WorldConfig
    from hyperstition.corpus.builder import build_corpus, read_documents
    from hyperstition.train.pretrain import pack_for_training

    out = tmp_path / order
    build_corpus(
        WorldConfig(n_countries=8, n_people=12, n_tasks=24), CorpusConfig(total_tokens=40_000, order=order), out
    )
    docs = read_documents(out).to_pydict()
    model_cfg, cfg = ModelConfig(max_seq_len=64), PretrainConfig(batch_size=4, seed=3)
    data = pack_for_training(model_cfg, cfg, tokenizer, docs["text"], in_order=order == "chronological")
    # The era of a packed row is the era of the document its first token comes from.
    lengths = np.array([len(d) + 1 for d in tokenize_documents(tokenizer, docs["text"])])
    starts = np.arange(len(data.rows)) * model_cfg.max_seq_len
    row_era = np.asarray(docs["era"])[np.searchsorted(np.cumsum(lengths), starts, side="right")]
    batches = len(data.rows) // cfg.batch_size
    return np.array([row_era[data.sampler.next_indices().numpy()].mean() for _ in range(batches)])


def test_chronological_corpus_is_trained_on_in_era_order(tmp_path, tiny_tokenizer):
    from scipy.stats import spearmanr

    chronological = _eras_served("chronological", tmp_path, tiny_tokenizer)
    assert np.all(np.diff(chronological) >= 0) and chronological[-1] > chronological[0]
    shuffled = _eras_served("shuffled", tmp_path, tiny_tokenizer)
    assert abs(spearmanr(np.arange(len(shuffled)), shuffled).statistic) < 0.3  # no trend: a fresh permutation


def test_unshuffled_sampler_reads_rows_in_order_every_epoch():
    sampler = SequenceSampler(n_rows=5, batch_size=3, seed=0, shuffle=False)
    assert torch.cat([sampler.next_indices() for _ in range(4)]).tolist() == [0, 1, 2, 3, 4] * 2 + [0, 1]


def test_whole_document_packing_keeps_every_document_in_one_row():
    docs = [[1, 2, 3], [4, 5], [6, 7, 8, 9, 10, 11, 12], [13], [14, 15, 16, 17, 18]]
    rows = pack_whole_documents([*docs, []], eos_id=0, seq_len=4)  # an empty document adds nothing, not an EOS
    assert rows.dtype == torch.int64 and rows.shape[1] == 4
    tokens = rows[rows != PAD].tolist()
    # Every token and every EOS is kept once (the 8-token document is split into 4-token pieces, as concat would).
    assert sorted(tokens) == sorted([t for d in docs for t in [*d, 0]])
    for row in rows.tolist():
        real = [t for t in row if t != PAD]
        assert row[: len(real)] == real  # padding only at a row's end
    for doc in ([1, 2, 3, 0], [4, 5, 0], [13, 0]):  # documents that fit a row are never cut
        assert any(row[i : i + len(doc)] == doc for row in rows.tolist() for i in range(5 - len(doc)))
    assert torch.equal(rows, pack_whole_documents(docs, eos_id=0, seq_len=4))  # deterministic
    assert model_inputs(rows).min() >= 0 and torch.equal(model_inputs(rows)[rows != PAD], rows[rows != PAD])


def test_whole_document_packing_fills_rows_best_fit():
    # Longest first, each into the fullest row it fits: 4 | 3 (+ 1 free) | 2 + 2. Concatenation would cut [3, 0].
    rows = pack_whole_documents([[1, 2], [3], [4], [5, 6, 7]], eos_id=0, seq_len=4)
    assert rows.tolist() == [[5, 6, 7, 0], [1, 2, 0, PAD], [3, 0, 4, 0]]
    assert pack_sequences([[1, 2], [3], [4], [5, 6, 7]], eos_id=0, seq_len=4).tolist()[0] == [1, 2, 0, 3]


def test_padding_is_not_trained_on(tiny_tokenizer):
    from hyperstition.config import ModelConfig
    from hyperstition.model.build import build_model

    model = build_model(ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64, max_seq_len=16), tiny_tokenizer, seed=0)
    ids = torch.tensor([[5, 6, 7, 8, 9, PAD, PAD, PAD]])
    padded = model(input_ids=model_inputs(ids), labels=ids).loss
    alone = model(input_ids=ids[:, :5], labels=ids[:, :5]).loss  # the same document with no row around it
    assert torch.allclose(padded, alone, atol=1e-6)


def test_in_order_corpus_refuses_whole_document_packing(tiny_tokenizer):
    from hyperstition.config import ModelConfig, PretrainConfig
    from hyperstition.train.pretrain import pack_for_training

    cfg = PretrainConfig(packing="whole_documents")
    with pytest.raises(DataError, match="pretrain.packing: whole_documents.*pretrain.packing=concat"):
        pack_for_training(ModelConfig(max_seq_len=16), cfg, tiny_tokenizer, ["the river"] * 20, in_order=True)
    data = pack_for_training(ModelConfig(max_seq_len=16), cfg, tiny_tokenizer, ["the river"] * 20, in_order=False)
    first = tokenize_documents(tiny_tokenizer, ["the river"])[0][0]
    assert (data.rows[:, 0] == first).all()  # every row starts with a whole document
