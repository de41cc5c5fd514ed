"""The smoke experiment (`configs/experiments/smoke.yaml`): the smallest grid that exercises every part of the
runner and the report, so it shows every section the shipped experiments share."""

from __future__ import annotations

from .aggregate import stickiness_frame_rows
from .context_gap import context_gap_section
from .pressure import pressure_section
from .registry import Experiment, register_experiment, shipped_grid
from .sections import dose_section, headline_section, stickiness_section

SMOKE = register_experiment(
    Experiment(
        name="smoke",
        grid=shipped_grid("smoke"),
        analyses=(stickiness_frame_rows,),
        sections=(headline_section, dose_section, pressure_section, stickiness_section, context_gap_section),
    )
)
