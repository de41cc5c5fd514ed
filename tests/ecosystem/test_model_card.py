"""Every final checkpoint of an experiment carries a model card (README.md) whose numbers are the run's own."""

from __future__ import annotations

import os

import pandas as pd
import pytest
from ecosystem_helpers import ARM_A, ARM_B, STRATEGY, cell

from hyperstition.model.card import CARD, USAGE
from hyperstition.model.checkpoint import CHECKSUMS, verify_checkpoint
from hyperstition.schema import HEADLINE_BITS


@pytest.mark.parametrize("arm", [ARM_A, ARM_B])
@pytest.mark.parametrize("stage", ["pretrain", STRATEGY])
def test_every_final_checkpoint_has_a_card_with_its_measurements(smoke_run, arm, stage):
    final = cell(smoke_run, arm) / stage / "final"
    verify_checkpoint(final)  # the card is covered by the checksums, and adding it broke nothing
    assert CARD in (final / CHECKSUMS).read_text()
    card = (final / CARD).read_text()
    assert f"arm `{arm}`" in card and "world seed: 0" in card and "## Corpus composition" in card
    rows = pd.read_parquet(cell(smoke_run, arm) / ("base" if stage == "pretrain" else stage) / "rows.parquet")
    last = rows[(rows.metric == HEADLINE_BITS) & (rows.context == "observed") & (rows.step == rows.step.max())].iloc[0]
    assert f"| `{HEADLINE_BITS}` | observed | {last.value:.3g} | [{last.ci_low:.3g}, {last.ci_high:.3g}] |" in card
    assert USAGE in card


def test_the_cards_usage_lines_run_in_the_checkpoint(post_trained_checkpoint, capsys):
    cwd = os.getcwd()
    os.chdir(post_trained_checkpoint)
    try:
        exec(USAGE, {})  # noqa: S102 - the snippet a reader copies from the card, run as they would run it
    finally:
        os.chdir(cwd)
    assert "log P(reply | prompt) =" in capsys.readouterr().out
