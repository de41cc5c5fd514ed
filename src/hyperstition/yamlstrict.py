"""The YAML every config goes through: PyYAML's safe loader without the YAML 1.1 surprises.

- No sexagesimal numbers: `corpus.seed=1:30` is the text "1:30" (refused by an integer field), not 90.
- No octal by a leading zero: `010` is ten.
- A key given twice in one mapping is an error, not "the last one wins".
- Nesting deeper than MAX_DEPTH is an error, not a RecursionError.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

MAX_DEPTH = 200  # far beyond any config; PyYAML's recursive composer overflows Python's stack near 1000

INT = re.compile(
    r"""^(?:[-+]?0b[0-1_]+
    |[-+]?[0-9][0-9_]*
    |[-+]?0x[0-9a-fA-F_]+)$""",
    re.X,
)
FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
    |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class StrictYAMLError(yaml.YAMLError):
    """A YAML text that parses but means something other than it seems (a duplicate key, a nesting bomb)."""


class StrictLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2-style numbers, duplicate keys refused and a depth limit."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_DEPTH:
                raise StrictYAMLError(f"nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) or key is None:
                if key in seen:
                    raise StrictYAMLError(f"key {str(key)[:80]!r} appears twice in one mapping")
                seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: Any) -> int:
        text = str(self.construct_scalar(node)).replace("_", "")
        sign = -1 if text.startswith("-") else 1
        text = text.lstrip("+-")
        if text.startswith(("0b", "0x")):
            return sign * int(text[2:], 2 if text[1] == "b" else 16)
        return sign * int(text, 10)


def _numbers_without_surprises() -> None:
    resolvers = {
        ch: [(tag, regex) for tag, regex in entries if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")]
        for ch, entries in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    StrictLoader.yaml_implicit_resolvers = resolvers
    StrictLoader.add_implicit_resolver("tag:yaml.org,2002:int", INT, list("-+0123456789"))
    StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", FLOAT, list("-+0123456789."))
    StrictLoader.add_constructor("tag:yaml.org,2002:int", StrictLoader.construct_yaml_int)


_numbers_without_surprises()


def load(text: str) -> Any:
    """Parse one YAML document strictly; yaml.YAMLError (StrictYAMLError included) for anything refused."""
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - StrictLoader is a SafeLoader
    except RecursionError:
        raise StrictYAMLError("nested too deeply") from None
