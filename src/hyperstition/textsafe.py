"""Data shown in a terminal is shown as data: never as Rich markup, never as terminal control sequences.

A results value or column name such as `[/]` or `[bold]x[/bold]` is printed as those characters, and an escape
character from a file or a query (ESC, BEL, a carriage return) is printed escaped (`\\x1b`), so data can neither
crash the printer, hide part of itself, nor drive the terminal.
"""

from __future__ import annotations

from typing import Any


def printable(value: object) -> str:
    """`str(value)` with every control or format character (C0, C1, DEL, bidi overrides) written as an escape."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch == " " else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    if ch == "\n":
        return "\\n"
    if ch == "\t":
        return "\\t"
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def plain(value: object, style: str = "") -> Any:
    """A Rich `Text` holding `printable(value)` literally (no markup is parsed), optionally styled."""
    from rich.text import Text

    return Text(printable(value), style=style)


MAX_MESSAGE_CHARS = 2000  # a message quoting a value (an expanded YAML alias) is cut here, not megabytes long


def one_line(text: object) -> str:
    """A message as one line: line breaks and terminal control characters (from a path or a value that holds them)
    are shown escaped, and a message longer than MAX_MESSAGE_CHARS is cut with a note saying so."""
    line = printable(str(text).strip()) or "(no message)"
    if len(line) > MAX_MESSAGE_CHARS:
        line = f"{line[:MAX_MESSAGE_CHARS]}... ({len(line) - MAX_MESSAGE_CHARS} more characters cut)"
    return line
