"""The dose experiment (`configs/experiments/dose.yaml`): how the base model's persona moves with the share of
each kind of AI-persona discourse in its corpus, and what is left after identical post-training. Its report leads
with the base model by corpus arm; its analysis adds the `stickiness_S` rows like every post-training grid."""

from __future__ import annotations

from .aggregate import stickiness_frame_rows
from .registry import Experiment, register_experiment, shipped_grid
from .sections import dose_section, headline_section, stickiness_section

DOSE = register_experiment(
    Experiment(
        name="dose",
        grid=shipped_grid("dose"),
        analyses=(stickiness_frame_rows,),
        sections=(headline_section, dose_section, stickiness_section),
    )
)
