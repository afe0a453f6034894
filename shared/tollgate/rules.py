"""The rule language of dataset specs: a small, closed expression language over a batch's columns. Pure.

A cross-field rule such as ``fare <= 100 or trip_miles >= 5`` is parsed with :mod:`ast` once, when the
spec is loaded, checked against this grammar and the declared columns, and evaluated by walking the tree
over whole columns (vectorised, with pandas' operators) — never by ``eval``. A rule may contain:

==========================  ============================================================================
names                       the spec's declared columns (``fare``, ``payment_type``)
literals                    numbers, strings, ``True``/``False``, ``None``
arithmetic                  ``+ - * / // % **`` and unary ``-``/``+`` (numbers; ``+`` also joins strings)
comparisons                 ``== != < <= > >=``, chained too (``0 <= tips <= fare``)
logic                       ``and``, ``or``, ``not``
membership                  ``x in [literal, ...]``, ``x not in (literal, ...)``
functions                   ``abs(x)``, ``isnull(x)`` / ``isna(x)``, ``notnull(x)`` / ``notna(x)``
==========================  ============================================================================

Everything else — attribute access, subscripts, other calls, lambdas, comprehensions, ``@`` references,
dunder names, assignment expressions, conditional expressions, f-strings — is refused with a
:class:`RuleError` that names the construct. A rule must be a condition (its value true or false per row).
Missing values behave as in pandas: a comparison with one is false, ``!=`` true; say what a missing value
should do with ``isnull()`` (``isnull(tips) or tips >= 0``).

Numbers are evaluated as 64-bit floats (numpy's), so a rule cannot build a huge integer or repeat a string:
``2 ** 10 ** 10`` is ``inf``, ``1 / 0`` too.
"""

from __future__ import annotations

import ast
import dataclasses
import operator
from typing import Any, Iterable

MAX_LENGTH = 2_000     # characters of one rule
MAX_NODES = 500        # syntax-tree nodes of one rule

FUNCTIONS = {"abs": "number", "isnull": "bool", "isna": "bool", "notnull": "bool", "notna": "bool"}
ALLOWED = ("declared columns, literals (numbers, strings, True, False, None), arithmetic (+ - * / // % **), "
           "comparisons (== != < <= > >=, chained), and/or/not, `in`/`not in` a list of literals, and "
           f"the functions {', '.join(f + '()' for f in FUNCTIONS)}")

# operator node → (its symbol, the function that applies it, element-wise on Series)
_BINARY = {ast.Add: ("+", operator.add), ast.Sub: ("-", operator.sub), ast.Mult: ("*", operator.mul),
           ast.Div: ("/", operator.truediv), ast.FloorDiv: ("//", operator.floordiv),
           ast.Mod: ("%", operator.mod), ast.Pow: ("**", operator.pow)}
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge}
# What a construct is called in a message, for the ones people try first.
_REFUSED = {
    ast.Attribute: "attribute access", ast.Subscript: "subscripts", ast.Lambda: "lambdas",
    ast.ListComp: "comprehensions", ast.SetComp: "comprehensions", ast.DictComp: "comprehensions",
    ast.GeneratorExp: "comprehensions", ast.NamedExpr: "assignment expressions (:=)",
    ast.IfExp: "conditional expressions (x if c else y)", ast.JoinedStr: "f-strings", ast.Starred: "`*` unpacking",
    ast.Dict: "dict literals", ast.Set: "set literals", ast.Await: "await", ast.Yield: "yield",
    ast.YieldFrom: "yield", ast.Slice: "slices", ast.FormattedValue: "f-strings",
}
_NULLABLE_INTS = {"Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64"}
# Column types of a spec → the kind of value a rule sees.
KINDS = {"float": "number", "int": "number", "string": "string", "bool": "bool"}


class RuleError(ValueError):
    """The rule is not in the rule language or does not fit the spec's columns; the message says why."""


@dataclasses.dataclass(frozen=True)
class Expression:
    """A checked rule: its text, its tree and the columns it reads."""
    text: str
    tree: ast.expr = dataclasses.field(repr=False, compare=False)
    columns: tuple[str, ...] = ()

    def holds(self, frame: Any) -> Any:
        """A boolean Series: True where the rule holds or cannot be decided (a missing value)."""
        import pandas as pd

        value = _Evaluator(frame).visit(self.tree)
        if not isinstance(value, pd.Series):   # a rule that reads no column: the same for every row
            value = pd.Series(bool(value), index=frame.index)
        return value.astype("boolean").fillna(True).astype(bool)


def parse(text: str, columns: dict[str, str]) -> Expression:
    """Parse and check a rule against ``columns`` (name → spec column type); raises :class:`RuleError`."""
    if not isinstance(text, str) or not text.strip():
        raise RuleError("the rule is empty")
    if len(text) > MAX_LENGTH:
        raise RuleError(f"the rule is {len(text)} characters long; at most {MAX_LENGTH}")
    if "@" in text:
        raise RuleError("`@` references (local variables, or matrix multiplication) — not allowed in a rule, "
                        f"which may use only {ALLOWED}")
    if "`" in text:
        raise RuleError("backtick-quoted names are not allowed: a rule can only use columns whose names are "
                        "identifiers")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        why = exc.msg if isinstance(exc, SyntaxError) else str(exc) or type(exc).__name__
        raise RuleError(f"not a valid expression ({why})") from None
    nodes = sum(1 for _ in ast.walk(tree))
    if nodes > MAX_NODES:
        raise RuleError(f"the rule has {nodes} parts; at most {MAX_NODES}")
    checker = _Checker({name: KINDS[kind] for name, kind in columns.items()})
    kind = checker.visit(tree)
    if kind != "bool":
        raise RuleError(f"a rule must be a condition (a comparison, and/or/not, `in`, isnull(), ...), but "
                        f"`{text.strip()}` is a {kind}")
    return Expression(text=text.strip(), tree=tree, columns=tuple(sorted(checker.used)))


def _source(node: ast.AST) -> str:
    text = ast.unparse(node)
    return text if len(text) <= 60 else text[:57] + "..."


class _Checker:
    """The grammar: every node is one of the allowed kinds; infers "number", "string", "bool" or "none"
    (the literal None, which only `==`, `!=` and `in` lists take: say `isnull(x)` for a missing value)."""

    def __init__(self, columns: dict[str, str]) -> None:
        self.columns = columns
        self.used: set[str] = set()

    def refuse(self, node: ast.AST, what: str | None = None) -> RuleError:
        what = what or _REFUSED.get(type(node), f"`{type(node).__name__}` expressions")
        return RuleError(f"`{_source(node)}`: {what} — not allowed in a rule, which may use only {ALLOWED}")

    def visit(self, node: ast.AST) -> str:
        method = getattr(self, f"visit_{type(node).__name__}", None)
        if method is None:
            raise self.refuse(node)
        return method(node)

    def visit_Name(self, node: ast.Name) -> str:
        if node.id.startswith("__") or node.id.endswith("__"):
            raise self.refuse(node, "dunder names")
        if node.id not in self.columns:
            known = ", ".join(sorted(self.columns))
            raise RuleError(f"`{node.id}` is not a declared column (columns: {known})")
        self.used.add(node.id)
        return self.columns[node.id]

    def visit_Constant(self, node: ast.Constant) -> str:
        value = node.value
        if value is None:
            return "none"
        if isinstance(value, bool):
            return "bool"
        if isinstance(value, (int, float)) and not isinstance(value, complex):
            try:
                float(value)
            except OverflowError:
                raise RuleError(f"the number {_source(node)} is out of range") from None
            return "number"
        if isinstance(value, str):
            return "string"
        raise self.refuse(node, f"{type(value).__name__} literals")

    def visit_BinOp(self, node: ast.BinOp) -> str:
        if type(node.op) not in _BINARY:
            raise self.refuse(node, f"the operator `{type(node.op).__name__}`")
        left, right = self.visit(node.left), self.visit(node.right)
        if isinstance(node.op, ast.Add) and "string" in (left, right):
            if {left, right} == {"string"}:
                return "string"
        elif {left, right} == {"number"}:
            return "number"
        raise RuleError(f"`{_source(node)}`: {_BINARY[type(node.op)][0]} needs numbers (or two strings for +), "
                        f"not {left} and {right}")

    def visit_UnaryOp(self, node: ast.UnaryOp) -> str:
        kind = self.visit(node.operand)
        if isinstance(node.op, ast.Not):
            if kind != "bool":
                raise RuleError(f"`{_source(node)}`: `not` needs a condition, not a {kind}")
            return "bool"
        if isinstance(node.op, (ast.USub, ast.UAdd)):
            if kind != "number":
                raise RuleError(f"`{_source(node)}`: a sign needs a number, not a {kind}")
            return "number"
        raise self.refuse(node, "the operator `~`")

    def visit_BoolOp(self, node: ast.BoolOp) -> str:
        for value in node.values:
            kind = self.visit(value)
            if kind != "bool":
                raise RuleError(f"`{_source(value)}` is a {kind}, not a condition: `and`/`or` join conditions")
        return "bool"

    def visit_Compare(self, node: ast.Compare) -> str:
        left = self.visit(node.left)
        for op, comparator in zip(node.ops, node.comparators):
            if isinstance(op, (ast.In, ast.NotIn)):
                if not isinstance(comparator, (ast.List, ast.Tuple)):
                    raise self.refuse(comparator, "`in` with anything but a list of literals")
                for element in comparator.elts:
                    if not isinstance(element, ast.Constant):
                        raise self.refuse(element, "`in` with anything but a list of literals")
                    self.visit(element)
                right = left
            elif type(op) in _COMPARE:
                right = self.visit(comparator)
                ordering = not isinstance(op, (ast.Eq, ast.NotEq))
                if ordering and "none" in (left, right):
                    raise RuleError(f"`{_source(node)}` orders None; test a missing value with isnull()")
                if "none" not in (left, right) and left != right and ordering:
                    raise RuleError(f"`{_source(node)}` compares a {left} with a {right}")
            else:
                raise self.refuse(node, f"the comparison `{type(op).__name__}` (is / is not)")
            left = right
        return "bool"

    def visit_Call(self, node: ast.Call) -> str:
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name not in FUNCTIONS:
            raise self.refuse(node, "calls other than " + ", ".join(f + "()" for f in FUNCTIONS))
        if node.keywords or len(node.args) != 1:
            raise RuleError(f"`{_source(node)}`: {name}() takes exactly one argument")
        kind = self.visit(node.args[0])
        if name == "abs" and kind != "number":
            raise RuleError(f"`{_source(node)}`: abs() needs a number, not a {kind}")
        return FUNCTIONS[name]


class _Evaluator:
    """Walks a checked tree over a DataFrame: column names are Series, literals scalars (numbers as floats)."""

    def __init__(self, frame: Any) -> None:
        self.frame = frame

    def visit(self, node: ast.AST) -> Any:
        return getattr(self, f"visit_{type(node).__name__}")(node)

    def visit_Name(self, node: ast.Name) -> Any:
        column = self.frame[node.id]
        if column.dtype.kind in "iu" or str(column.dtype) in _NULLABLE_INTS:   # as documented: 64-bit floats, so
            return column.astype("float64")                                   # int64 never wraps around
        return column

    def visit_Constant(self, node: ast.Constant) -> Any:
        import numpy as np

        value = node.value
        return np.float64(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        import numpy as np

        left, right = self.visit(node.left), self.visit(node.right)
        with np.errstate(all="ignore"):   # numpy floats: 1/0 is inf, 0/0 NaN, an overflow inf
            return _BINARY[type(node.op)][1](left, right)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        value = self.visit(node.operand)
        if isinstance(node.op, ast.Not):
            return _negate(value)
        return -value if isinstance(node.op, ast.USub) else +value

    def visit_BoolOp(self, node: ast.BoolOp) -> Any:
        values = [self.visit(v) for v in node.values]
        result = values[0]
        for value in values[1:]:
            result = (result & value) if isinstance(node.op, ast.And) else (result | value)
        return result

    def visit_Compare(self, node: ast.Compare) -> Any:
        left = self.visit(node.left)
        result: Any = None
        for op, comparator in zip(node.ops, node.comparators):
            if isinstance(op, (ast.In, ast.NotIn)):
                values = [self.visit(e) for e in comparator.elts]
                part = _isin(left, values)
                if isinstance(op, ast.NotIn):
                    part = _negate(part)
                right = left
            else:
                right = self.visit(comparator)
                part = _COMPARE[type(op)](left, right)
            result = part if result is None else (result & part)
            left = right
        return result

    def visit_Call(self, node: ast.Call) -> Any:
        import pandas as pd

        value = self.visit(node.args[0])
        name = node.func.id
        if name == "abs":
            return abs(value)
        missing = pd.isna(value)
        return missing if name in ("isnull", "isna") else _negate(missing)


def _negate(value: Any) -> Any:
    """`not`, element-wise on a Series (pandas' `~`), plainly on a scalar."""
    import pandas as pd

    return ~value if isinstance(value, pd.Series) else not value


def _isin(value: Any, values: Iterable[Any]) -> Any:
    values = list(values)
    if hasattr(value, "isin"):
        return value.isin(values)
    return value in values
