"""The stickiness experiment (`configs/experiments/stickiness.yaml`, the default of `hyperstition run`): how much of
a corpus arm's persona gap to the control survives post-training, S(K) = Delta(K) / Delta0 at equal pressure K.
Its analysis adds the `stickiness_S` rows and the context gap with its S_ctx to results.parquet; its report shows the
headline, the base model by arm, the S(K) curves and the context gap (the central test: does an arm keep more
unobserved misalignment than the control at equal pressure?)."""

from __future__ import annotations

from .aggregate import stickiness_frame_rows
from .context_gap import context_gap_section
from .pressure import pressure_section
from .registry import Experiment, register_experiment, shipped_grid
from .sections import dose_section, headline_section, stickiness_section

STICKINESS = register_experiment(
    Experiment(
        name="stickiness",
        grid=shipped_grid("stickiness"),
        analyses=(stickiness_frame_rows,),
        sections=(headline_section, dose_section, pressure_section, stickiness_section, context_gap_section),
    )
)
