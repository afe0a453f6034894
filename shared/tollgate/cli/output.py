"""Where `tollgate` writes: tables and JSON on stdout (``out``), progress and messages on stderr (``console``)."""

from __future__ import annotations

import sys
from typing import Any

import click
import orjson
from rich.console import Console

# piped or redirected output is not cut to 80 columns (what rich assumes without a terminal)
console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)
out = Console(width=None if sys.stdout.isatty() else 200)


# `--json` on every command that prints a view
json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print the result as JSON on stdout (the same fields as the table, and more) instead "
                                "of a table.")


def dump(payload: Any) -> None:
    """JSON on stdout: highlighted on a terminal, plain (and parseable) when piped."""
    text = orjson.dumps(payload, default=str, option=orjson.OPT_INDENT_2).decode()
    if out.is_terminal:
        out.print_json(text)
    else:
        sys.stdout.write(text + "\n")


def number(value: Any, pattern: str = "{:.4f}") -> str:
    return "" if value is None else pattern.format(value)
