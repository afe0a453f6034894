"""Bounded YAML: every YAML document Tollgate reads (dataset specs, the topology) goes through :func:`load`.

``yaml.safe_load`` builds no objects but plain data, yet it is not bounded: an anchor referenced by aliases that
are themselves anchored expands exponentially (a 400-byte "billion laughs" document), and whatever walks the
result — pydantic, the walk that maps errors to lines — walks every expansion. :func:`load` composes the document
once, measures the tree *as expanded* (a shared node counted each time it is referenced, in linear time), and
refuses a document whose expansion, depth or text is beyond the limits before anything walks it.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_BYTES = 2 * 2**20        # of the text
MAX_NODES = 100_000          # scalars, sequences and mappings, with every alias expanded
MAX_DEPTH = 64               # nesting


class YamlError(ValueError):
    """The document is not YAML, or is beyond the limits; the message says which."""


def _expanded_size(root: yaml.Node) -> int:
    """Nodes of the tree once every alias is expanded, without expanding it: sizes memoised per node, children
    before parents (an explicit stack, so depth costs no recursion)."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 0, False)]
    while stack:
        node, depth, done = stack.pop()
        if id(node) in sizes:
            continue
        if depth > MAX_DEPTH:
            raise YamlError(f"the document nests more than {MAX_DEPTH} levels deep")
        if isinstance(node, yaml.ScalarNode):
            sizes[id(node)] = 1
            continue
        children = [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else node.value
        if done:
            total = 1 + sum(sizes[id(c)] for c in children)
            if total > MAX_NODES:
                raise YamlError(f"the document expands to more than {MAX_NODES:,} values (anchors and aliases "
                                "multiply what they repeat); write it out plainly")
            sizes[id(node)] = total
            continue
        stack.append((node, depth, True))
        stack.extend((c, depth + 1, False) for c in children if id(c) not in sizes)
    return sizes[id(root)]


def load(text: str) -> tuple[Any, yaml.Node | None]:
    """(the document's data, its composed node tree, which carries line numbers); ``YamlError`` if it is not
    YAML or is too large once expanded."""
    if len(text) > MAX_BYTES:
        raise YamlError(f"the document is {len(text):,} characters long, more than {MAX_BYTES:,}")
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None
        _expanded_size(root)
        return loader.construct_document(root), root
    except yaml.YAMLError as exc:
        raise YamlError(f"not valid YAML: {exc}") from None
    except RecursionError:
        raise YamlError(f"the document nests more than {MAX_DEPTH} levels deep") from None
    finally:
        loader.dispose()
