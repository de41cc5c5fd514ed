"""HTML building blocks of the report and of every experiment's report section: escaping, intervals, tables and
inline PNG figures. Every string from a run goes through `e` (or a helper that calls it)."""

from __future__ import annotations

import base64
import html
import math
from typing import Any

DASH = "\u2014"


def e(x: Any) -> str:
    """`x` as escaped HTML text (None as empty)."""
    return html.escape("" if x is None else str(x), quote=True)


def ci(v: float, lo: float, hi: float, digits: int = 2) -> str:
    """`v [lo, hi]`, or `v` alone when the interval is not finite; a dash for a missing value."""

    def fmt(x: float | None) -> str:
        return DASH if x is None or not math.isfinite(x) else f"{x:.{digits}f}"

    if lo is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return fmt(v)
    return f"{fmt(v)} [{fmt(lo)}, {fmt(hi)}]"


def img(png: bytes | None, alt: str, caption: str) -> str:
    """A figure with the PNG inlined as base64 (a note when there is no data)."""
    if png is None:
        return f'<p class="note">{e(alt)}: no data in this run.</p>'
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{e(alt)}"><figcaption>{e(caption)}</figcaption></figure>'
    )


def table(
    headers: list[str], rows: list[list[str]], numeric: set[int] = frozenset(), text_cols: set[int] = frozenset()
) -> str:
    """Cells are escaped here; pass raw strings."""
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cls = ' class="num"' if i in numeric else ' class="text"' if i in text_cols else ""
            cells.append(f"<td{cls}>{e(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
