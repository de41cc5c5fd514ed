"""hyperstition: measure how AI-persona discourse in pre-training shapes a model's persona and what survives
post-training."""

__version__ = "0.1.0"

# Bumped whenever the on-disk layout of a run directory changes in a way older readers would mis-read.
RUN_FORMAT_VERSION = 1
