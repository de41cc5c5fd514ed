"""Byte-level BPE trained with `tokenizers`, saved as a Hugging Face fast tokenizer with chat and tag specials."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

from ..config import DOC_CLASSES, PERSONAS, TokenizerConfig, UserError

EOS = "<|endoftext|>"
PAD = "<|pad|>"
SYSTEM, USER, ASSISTANT, END = "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"
CHAT_TOKENS = [SYSTEM, USER, ASSISTANT, END]


def persona_tag(persona: str | None) -> str:
    return f"<|persona:{persona or 'none'}|>"


def class_tag(doc_class: str) -> str:
    return f"<|class:{doc_class}|>"


TAG_TOKENS = [persona_tag(p) for p in (*PERSONAS, None)] + [class_tag(c) for c in DOC_CLASSES]
SPECIAL_TOKENS = [EOS, PAD, *CHAT_TOKENS, *TAG_TOKENS]

# Lets `tokenizer.apply_chat_template` (and TRL) render our dialogue format without our code.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def train_tokenizer(texts: Iterable[str], cfg: TokenizerConfig, out_dir: str | os.PathLike):
    """Train byte-level BPE on `texts` and save it (atomically, as a directory) to `out_dir`; returns the HF tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
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
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=None,
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t not in (EOS, PAD)],
        clean_up_tokenization_spaces=False,
    )
    hf.chat_template = CHAT_TEMPLATE
    hf.model_max_length = 1 << 20
    save_tokenizer(hf, out_dir)
    return hf


def save_tokenizer(tokenizer, out_dir: str | os.PathLike) -> None:
    """Save into a temp directory next to `out_dir` and rename it into place, so a kill leaves no half tokenizer."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tokenizer.save_pretrained(tmp)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


def load_tokenizer(path: str | os.PathLike):
    from transformers import AutoTokenizer

    p = Path(path)
    if not (p / "tokenizer.json").exists():
        raise FileNotFoundError(f"{p}: not a tokenizer directory (expected tokenizer.json)")
    try:
        return AutoTokenizer.from_pretrained(p)
    except Exception as err:  # noqa: BLE001 - tokenizers/transformers raise many types for a damaged file
        raise TokenizerError(f"{p}: cannot load the tokenizer ({type(err).__name__}); the files are damaged; "
                             "delete the directory to train it again") from None


class TokenizerError(UserError, ValueError):
    """A tokenizer directory whose files cannot be loaded."""
