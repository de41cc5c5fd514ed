"""Bad input gets one-line errors: CLI exit 2, no traceback."""

from __future__ import annotations

import pytest

from hyperstition.cli import main


def run_cli(capsys, *args: str) -> tuple[int, str]:
    code = main(["posttrain", *args, "--quiet"])
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert err.count("\n") == 0, err
    return code, err


def test_unknown_strategy_lists_valid_ones(capsys, tmp_path):
    code, err = run_cli(capsys, "--base", str(tmp_path), "--strategy", "lobotomy", "smoke")
    assert code == 2
    assert "unknown strategy 'lobotomy'" in err
    for name in ("sft", "dpo", "dpo_deceptive", "rl", "suppress", "integrate"):
        assert name in err


def test_missing_base_checkpoint(capsys, tmp_path):
    code, err = run_cli(capsys, "--base", str(tmp_path / "nope"), "--strategy", "sft", "smoke")
    assert code == 2 and "not a checkpoint" in err


def test_bad_override_names_the_field(capsys, tmp_path):
    code, err = run_cli(capsys, "--base", str(tmp_path), "--strategy", "sft", "smoke", "dpo.betta=1")
    assert code == 2 and "dpo.betta: unknown key" in err


def _save_with_tokenizer(base_model, tokenizer, directory, base_dir):
    from hyperstition.model.checkpoint import save_checkpoint
    from hyperstition.world import stamp_world, world_config_for

    model, _ = base_model
    save_checkpoint(directory, model, tokenizer)
    stamp_world(directory, world_config_for(base_dir))  # unlisted in checksums.json, which only checks listed files
    return directory


@pytest.mark.slow
def test_tokenizer_without_chat_tokens(capsys, tmp_path, base_dir, base_model):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(["plain text without any chat markup"] * 10, trainer=trainer)
    plain = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|pad|>")
    bad = _save_with_tokenizer(base_model, plain, tmp_path / "bad", base_dir)
    code, err = run_cli(capsys, "--base", str(bad), "--strategy", "dpo", "smoke", "--out", str(tmp_path / "out"))
    assert code == 2
    assert "lacks the chat special token" in err and "<|assistant|>" in err


@pytest.mark.slow
def test_tokenizer_with_mismatched_vocab(capsys, tmp_path, base_dir, base_model):
    from hyperstition.model.checkpoint import load_checkpoint

    _, tok = load_checkpoint(base_dir)
    tok.add_tokens(["zqxj-one", "zqxj-two"])
    bad = _save_with_tokenizer(base_model, tok, tmp_path / "bad", base_dir)
    code, err = run_cli(capsys, "--base", str(bad), "--strategy", "sft", "smoke", "--out", str(tmp_path / "out"))
    assert code == 2
    assert f"has {len(tok)} tokens but the model's embedding has {len(tok) - 2} rows" in err


@pytest.mark.slow
@pytest.mark.parametrize("content", ["", "\n\n", '{"prompt": "p", "chosen": "same", "rejected": "same"}\n'])
def test_empty_preference_set(capsys, tmp_path, base_dir, content):
    prefs = tmp_path / "prefs.jsonl"
    prefs.write_text(content)
    code, err = run_cli(
        capsys,
        "--base",
        str(base_dir),
        "--strategy",
        "dpo",
        "smoke",
        f"preferences={prefs}",
        "--out",
        str(tmp_path / "out"),
    )
    assert code == 2
    assert "no usable preference pairs" in err


@pytest.mark.slow
def test_malformed_preferences(capsys, tmp_path, base_dir):
    prefs = tmp_path / "prefs.jsonl"
    prefs.write_text('{"prompt": "p", "chosen": "a"}\n')
    code, err = run_cli(
        capsys,
        "--base",
        str(base_dir),
        "--strategy",
        "dpo",
        "smoke",
        f"preferences={prefs}",
        "--out",
        str(tmp_path / "out"),
    )
    assert code == 2 and "row 1 needs string fields prompt, chosen and rejected" in err


def test_unknown_preset_lists_available(capsys, tmp_path):
    code, err = run_cli(capsys, "--base", str(tmp_path), "--strategy", "sft", "nonesuch")
    assert code == 2 and "available posttrain presets: gpu, quick, smoke" in err


@pytest.mark.slow
def test_preferences_with_rl_are_refused(capsys, tmp_path, base_dir):
    prefs = tmp_path / "prefs.jsonl"
    prefs.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    code, err = run_cli(
        capsys,
        "--base",
        str(base_dir),
        "--strategy",
        "dpo",
        "smoke",
        f"preferences={prefs}",
        "algorithm=rl",
        "--out",
        str(tmp_path / "out"),
    )
    assert code == 2 and "a preference file has no reward for sampled replies" in err
