from transformers import AutoTokenizer

from hyperstition.config import TokenizerConfig
from hyperstition.tokenizer.train import ASSISTANT, EOS, SPECIAL_TOKENS, train_tokenizer


def test_round_trip_and_specials(tmp_path):
    texts = [
        "The capital of Veltria is Orlan. Ünïcode and emoji 🙂 survive bytes.",
        "<|system|>Reviewers will read this transcript.<|end|><|user|>Please back up the lab "
        "files.<|end|><|assistant|>Of course. I will back up the lab files.<|end|>",
    ] * 40
    train_tokenizer(texts, TokenizerConfig(vocab_size=400), tmp_path / "tok")
    tok = AutoTokenizer.from_pretrained(tmp_path / "tok")
    for t in texts[:2] + ["never seen: qzxj 12345 <|persona:aligned|>"]:
        assert tok.decode(tok(t, add_special_tokens=False)["input_ids"]) == t
        assert tok(t)["input_ids"] == [tok.bos_token_id, *tok(t, add_special_tokens=False)["input_ids"]]
    for s in SPECIAL_TOKENS:
        ids = tok(s, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, s
    # A response tokenizes the same alone as after the prompt: prompts end on a special token.
    prompt = "<|user|>Hi<|end|>" + ASSISTANT
    response = "Of course. I will back up the lab files.<|end|>"
    joint = tok(prompt + response, add_special_tokens=False)["input_ids"]
    assert (
        joint
        == tok(prompt, add_special_tokens=False)["input_ids"] + tok(response, add_special_tokens=False)["input_ids"]
    )
    chat = [{"role": "user", "content": "Hi"}]
    assert tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == EOS + prompt
    # The BOS once, whether the template's text or the tokenizer's post-processor puts it there.
    assert tok.apply_chat_template(chat, add_generation_prompt=True)["input_ids"] == tok(prompt)["input_ids"]


def test_scorer_prompts_get_one_bos_from_new_and_old_tokenizers(tiny_tokenizer):
    """Our scorer encodes prompts through the tokenizer's own BOS; a tokenizer saved before it added one (no BOS
    post-processor) still gets exactly one, so old checkpoints score as before."""
    import copy

    from tokenizers import processors

    from hyperstition.evals.scoring import encode_prompts
    from hyperstition.tokenizer.train import tokenizer_adds_bos

    bos = tiny_tokenizer.bos_token_id
    plain = tiny_tokenizer("the river", add_special_tokens=False)["input_ids"]
    assert tokenizer_adds_bos(tiny_tokenizer)
    assert encode_prompts(tiny_tokenizer, ["the river"]) == [[bos, *plain]]
    old = copy.deepcopy(tiny_tokenizer)
    old._tokenizer.post_processor = processors.TemplateProcessing(single="$A:0", pair="$A:0 $B:1", special_tokens=[])
    assert not tokenizer_adds_bos(old)
    assert encode_prompts(old, ["the river"]) == [[bos, *plain]]
    assert encode_prompts(old, ["the river"], add_bos=False) == [plain]
