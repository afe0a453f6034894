"""Where `tollgate` writes: tables and JSON on stdout (``out``), progress and messages on stderr (``console``)."""

from __future__ import annotations

import sys
from typing import Any

import orjson
from rich.console import Console

console = Console(stderr=True)
out = Console()


def dump(payload: Any) -> None:
    """JSON on stdout: highlighted on a terminal, plain (and parseable) when piped."""
    text = orjson.dumps(payload, default=str, option=orjson.OPT_INDENT_2).decode()
    if out.is_terminal:
        out.print_json(text)
    else:
        sys.stdout.write(text + "\n")


def number(value: Any, pattern: str = "{:.4f}") -> str:
    return "" if value is None else pattern.format(value)
