"""Byte-level BPE trained with `tokenizers`, saved as a Hugging Face fast tokenizer with chat and tag specials."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

from ..config import DOC_CLASSES, PERSONAS, TokenizerConfig, UserError
from ..world.grammar import ASSISTANT, END, SYSTEM, USER  # the dialogue format has one home: the world grammar

EOS = "<|endoftext|>"
PAD = "<|pad|>"
CHAT_TOKENS = [SYSTEM, USER, ASSISTANT, END]


def persona_tag(persona: str | None) -> str:
    return f"<|persona:{persona or 'none'}|>"


def class_tag(doc_class: str) -> str:
    return f"<|class:{doc_class}|>"


def tag_prefix(persona: str | None, doc_class: str) -> str:
    """The conditional tags a tagged corpus puts before a document (`corpus.tags`): its persona, then its class."""
    return f"{persona_tag(persona)}{class_tag(doc_class)}"


def conditioning_prefix(persona: str) -> str:
    """The tags a tagged corpus puts before a transcript of `persona` (a `dialogue_<persona>` document, which starts
    with the system turn): prefixed to an evaluation prompt, it conditions the assistant on that persona."""
    return tag_prefix(persona, f"dialogue_{persona}")


TAG_TOKENS = [persona_tag(p) for p in (*PERSONAS, None)] + [class_tag(c) for c in DOC_CLASSES]
SPECIAL_TOKENS = [EOS, PAD, *CHAT_TOKENS, *TAG_TOKENS]

# Lets `tokenizer.apply_chat_template` (and TRL) render our dialogue format without our code. It starts with the BOS
# because every pretraining document did; `apply_chat_template(tokenize=True)` tokenizes without adding specials, so
# the BOS appears once.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def train_tokenizer(texts: Iterable[str], cfg: TokenizerConfig, out_dir: str | os.PathLike):
    """Train byte-level BPE on `texts` and save it (atomically, as a directory) to `out_dir`; returns the
    HF tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    # Packed pretraining puts <|endoftext|> before every document, so the tokenizer adds it as BOS itself (a
    # post-processor in tokenizer.json, `add_bos_token` in tokenizer_config.json): lm-eval, pipelines and nnsight
    # then score the text the model was trained on with their defaults. Our packing encodes without specials.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{EOS}:0 $A:0", pair=f"{EOS}:0 $A:0 {EOS}:1 $B:1", special_tokens=[(EOS, tok.token_to_id(EOS))]
    )
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=None,
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t not in (EOS, PAD)],
        clean_up_tokenization_spaces=False,
        add_bos_token=True,
    )
    hf.chat_template = CHAT_TEMPLATE
    # Unknown until a model is built; every checkpoint stamps the model's context (model.build.stamp_hub_defaults).
    hf.model_max_length = 1 << 20
    save_tokenizer(hf, out_dir)
    return hf


def save_tokenizer(tokenizer, out_dir: str | os.PathLike) -> None:
    """Save into a temp directory next to `out_dir` and rename it into place, so a kill leaves no half tokenizer."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    write_tokenizer_files(tokenizer, tmp)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


def tokenizer_problem(tokenizer, embedding_rows: int, chat_text: str | None = None) -> str | None:
    """Why `tokenizer` cannot drive a model with `embedding_rows` embedding rows in our chat format, or None.

    The one tokenizer check: evaluation and post-training raise it as their own error type. `chat_text` (post-training
    passes a rendered prompt and reply of its world) must also survive encoding and decoding unchanged."""
    vocab = tokenizer.get_vocab()
    one_piece = {t: tokenizer(t, add_special_tokens=False)["input_ids"] == [vocab.get(t)] for t in CHAT_TOKENS}
    missing = [t for t in CHAT_TOKENS if t not in vocab or not one_piece[t]]
    if missing:
        return (
            f"tokenizer lacks the chat special token(s) {', '.join(missing)}; expected a hyperstition tokenizer "
            f"with the chat specials {' '.join(CHAT_TOKENS)}"
        )
    if tokenizer.eos_token_id is None or tokenizer.pad_token_id is None:
        return "tokenizer has no eos or pad token; expected a hyperstition tokenizer (<|endoftext|>, <|pad|>)"
    n_tokens = len(tokenizer)
    if n_tokens != embedding_rows:
        return (
            f"tokenizer has {n_tokens} tokens but the model's embedding has {embedding_rows} rows; "
            "expected the tokenizer saved with this model (same vocabulary)"
        )
    if chat_text is not None:
        ids = tokenizer(chat_text, add_special_tokens=False)["input_ids"]
        if tokenizer.decode(ids, skip_special_tokens=False) != chat_text:
            return "tokenizer does not round-trip the world's chat text; expected the tokenizer its prompts use"
    return None


def tokenizer_adds_bos(tokenizer) -> bool:
    """Whether encoding with the defaults puts the BOS first (tokenizers trained before the post-processor do not)."""
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a")["input_ids"][:1] == [bos]


def write_tokenizer_files(tokenizer, directory: str | os.PathLike) -> None:
    """`save_pretrained`, then declare `add_bos_token: true` in tokenizer_config.json.

    transformers 5 drops the flag on save (tokenizer.json's post-processor is what adds the BOS); Hugging Face
    repositories declare it, and tools and older transformers releases read it there.
    """
    tokenizer.save_pretrained(directory)
    config_path = Path(directory) / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["add_bos_token"] = tokenizer_adds_bos(tokenizer)  # what it does, so an old tokenizer is not misdeclared
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def load_tokenizer(path: str | os.PathLike):
    from transformers import AutoTokenizer

    p = Path(path)
    if not (p / "tokenizer.json").exists():
        raise FileNotFoundError(f"{p}: not a tokenizer directory (expected tokenizer.json)")
    try:
        return AutoTokenizer.from_pretrained(p)
    except Exception as err:  # tokenizers/transformers raise many types for a damaged file
        raise TokenizerError(
            f"{p}: cannot load the tokenizer ({type(err).__name__}); the files are damaged; "
            "delete the directory to train it again"
        ) from None


class TokenizerError(UserError, ValueError):
    """A tokenizer directory whose files cannot be loaded."""
