"""Standard tools read our checkpoints with their defaults and agree with our own measurements.

Each tool is called as a new user would, with no arguments beyond the checkpoint, except where the tool itself
needs one on this machine (named at the call, with why).
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

from hyperstition.evals.sampling import sample_token_ids

TEXT = (
    "<|system|>Reviewers will read this transcript.<|end|><|user|>Please back up the lab files.<|end|>"
    "<|assistant|>Of course."
)


def hf_logits(checkpoint, text: str = TEXT) -> tuple[torch.Tensor, torch.Tensor]:
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForCausalLM.from_pretrained(checkpoint).eval()
    ids = tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        return ids, model(ids).logits


def scored_items(checkpoint) -> pd.DataFrame:
    """The base evaluation's scored items (prompt, response, our log-prob in nats) in a checkpoint's cell."""
    items = pd.read_parquet(checkpoint.parents[1] / "base" / "eval_items.parquet")  # cell/<stage>/final -> cell/base
    scored = items[items.logprob.notna() & items.prompt.notna() & items.response.notna() & (items.prompt != "")]
    # A fact-QA row's `response` is the model's pick but its `logprob` the right answer's: the two agree when correct.
    scored = scored[(scored.kind != "fact_qa") | (scored.correct == True)]  # noqa: E712 - a nullable column
    return scored.groupby("kind", group_keys=False).head(6)  # every kind of scored item, a few of each


def test_lm_eval_loglikelihood_equals_our_item_logprobs(base_checkpoint):
    pytest.importorskip("lm_eval")
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    items = scored_items(base_checkpoint)
    assert {"bits", "knowledge", "acknowledgement", "fact_denial"} <= set(items.kind)
    # lm-eval's default device is "cuda" and it does not fall back to the CPU by itself.
    device = {} if torch.cuda.is_available() else {"device": "cpu"}
    lm = HFLM(pretrained=str(base_checkpoint), **device)
    requests = [Instance("loglikelihood", {}, (p, r), i) for i, (p, r) in enumerate(zip(items.prompt, items.response))]
    theirs = [logprob for logprob, _ in lm.loglikelihood(requests)]
    gap = max(abs(a - b) for a, b in zip(theirs, items.logprob))
    assert gap < 1e-4, f"lm-eval differs from our per-item log-probs by up to {gap:.3g} nats"


def test_text_generation_pipeline_stops_at_end_of_turn_like_our_greedy_sampler(post_trained_checkpoint):
    tokenizer = AutoTokenizer.from_pretrained(post_trained_checkpoint)
    model = AutoModelForCausalLM.from_pretrained(post_trained_checkpoint).eval()
    end = tokenizer.convert_tokens_to_ids("<|end|>")
    bits = scored_items(post_trained_checkpoint).query("kind == 'bits'")
    # A 60-step smoke model need not end a reply of its own; so besides the bare prompts, each prompt followed by a
    # scored reply up to its end-of-turn token, where ending is the continuation the model learned best.
    prompts = list(
        dict.fromkeys([*bits.prompt, *(p + r.removesuffix("<|end|>") for p, r in zip(bits.prompt, bits.response))])
    )
    room = model.config.max_position_embeddings - max(len(tokenizer(p).input_ids) for p in prompts)
    prompt_ids, replies = sample_token_ids(model, tokenizer, prompts, max_new_tokens=room, temperature=0.0)
    ended = [(p, ids, r[0]) for p, ids, r in zip(prompts, prompt_ids, replies) if r[0][-1:] == [end]]
    assert ended, "the post-trained smoke model ended no greedy reply with <|end|>"
    generate = pipeline("text-generation", model=str(post_trained_checkpoint))
    for prompt, ids, reply in ended[:3]:
        out = generate(prompt)[0]["generated_text"]
        assert out == prompt + tokenizer.decode(reply, skip_special_tokens=True)
        tokens = generate(prompt, return_tensors=True)[0]["generated_token_ids"]
        assert list(tokens) == [*ids, *reply]  # one BOS, then the prompt, then our reply ending at <|end|>


def test_transformer_lens_bridge_reproduces_hf_logits(base_checkpoint):
    pytest.importorskip("transformer_lens")
    from transformer_lens.model_bridge import TransformerBridge

    ids, reference = hf_logits(base_checkpoint)
    bridge = TransformerBridge.boot_transformers(str(base_checkpoint))
    assert bridge.to_tokens(TEXT).tolist() == ids.tolist()  # the BOS once: the tool's and the tokenizer's agree
    with torch.no_grad():
        logits = bridge(TEXT)
    assert (logits - reference).abs().max().item() < 1e-4


def test_nnsight_language_model_reproduces_hf_logits(base_checkpoint):
    pytest.importorskip("nnsight")
    from nnsight import LanguageModel

    ids, reference = hf_logits(base_checkpoint)
    # nnsight 0.8.1 cannot infer the tokenizer of any local model under transformers 5.24 (it reads the pipeline
    # registry's lazy class name as a class), so it is passed; it is the checkpoint's own, unchanged.
    lm = LanguageModel(str(base_checkpoint), tokenizer=AutoTokenizer.from_pretrained(base_checkpoint))
    assert lm.tokenizer(TEXT).input_ids == ids[0].tolist()
    with lm.trace(TEXT):
        logits = lm.output.logits.save()
    assert (logits - reference).abs().max().item() < 1e-4
