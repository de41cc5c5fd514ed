"""The built-in measures: bits, rates, knowledge, capability, kl, spread (off by default), registered here in that
order, which is the order they run in and their rows appear in.

Each module builds its items and scores them; importing this package registers them (`evals.registry`), and
`hyperstition.evals` imports it before anything else of the package runs. A measure of one's own is a module that
calls `register_measure` itself; it runs after these. Module tops stay light (numpy, scipy and torch are imported
where a measure scores) so that reading an eval config, or `hyperstition --help`, never loads them.
"""

from ..registry import register_measure
from . import bits, capability, kl, knowledge, rates, spread

for _measure in (bits.MEASURE, rates.MEASURE, knowledge.MEASURE, capability.MEASURE, kl.MEASURE, spread.MEASURE):
    register_measure(_measure)
