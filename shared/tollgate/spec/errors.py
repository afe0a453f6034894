"""What a malformed spec says: every problem with its YAML path and, when the spec was read from text, its line."""

from __future__ import annotations

from typing import Any

import yaml

Problem = tuple[tuple[Any, ...], str]   # (YAML path, what is wrong there)


class SpecError(ValueError):
    """The dataset spec is malformed; each problem names its YAML path (and line, when loaded from text) and
    what is expected."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


def yaml_lines(root: yaml.Node | None) -> dict[tuple[Any, ...], int]:
    """YAML path → 1-based line of its key (mappings) or item (sequences). The tree is bounded once expanded
    (``tollgate.yamlload``), so walking its aliases is too."""
    lines: dict[tuple[Any, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[Any, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                here = path + (key.value,)
                lines[here] = key.start_mark.line + 1
                walk(value, here)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[path + (i,)] = item.start_mark.line + 1
                walk(item, path + (i,))

    if root is not None:
        lines[()] = root.start_mark.line + 1
        walk(root, ())
    return lines


def where(path: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    for n in range(len(path), -1, -1):
        if path[:n] in lines:
            return f"{text or '(top level)'} (line {lines[path[:n]]})"
    return text or "(top level)"
