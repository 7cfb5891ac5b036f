"""Label expressions: a label is a column or a small arithmetic/comparison formula.

A task's label in the spec is written as Python-like text, e.g. ``fare`` or
``tips > 0.2 * fare``. It is parsed once with :mod:`ast` and only a tiny, safe
subset is accepted (column names, numbers, strings, ``+ - * /``, unary minus,
one comparison, ``and``/``or``/``not``), so a spec can never run code. The same
compiled expression is evaluated on NumPy arrays in tests and on TensorFlow
tensors inside ``preprocessing_fn``: it only uses Python operators, which both
libraries overload element-wise.

A column whose name is not a plain name (``marital-status``, ``hours per week``) is
quoted in backticks, as in SQL: `` `marital-status` == 'Never-married' ``. Inside the
backticks any character but a backtick is part of the name; backticks inside a string
literal are the string's. Each quoted column stands in for a placeholder name while
:mod:`ast` parses the text, and is put back in the tree.

Nothing a spec writes can blow up later, in Transform: the text, the size and the
nesting of an expression are bounded (:data:`MAX_LENGTH`, :data:`MAX_NODES`,
:data:`MAX_DEPTH`), a string may only be compared (``'a' * 10**11`` would be Python's
string repetition), true/false values are not computed with (TensorFlow has no bool
arithmetic), arithmetic on constants is done once here (so ``1 / 0`` or ``1e308 * 10``
are refused now, not mid-pipeline), and a label must read a column.

The bounds: a label is a small formula (the bundled ones have at most 5 nodes and
3 levels), so they are far above any real label and far below what breaks Python.
:data:`MAX_LENGTH` (1,000 characters) is checked before :func:`ast.parse`, whose parser
and AST builder recurse once per nested term (a 3,000-term ``a + a + ...`` exhausts the
default recursion limit; a RecursionError there is still caught). :data:`MAX_DEPTH`
(32 levels): the checker and the evaluator recurse a frame or two per level, which
stays clear of the limit even when Transform evaluates deep in Beam's stack.
:data:`MAX_NODES` (128 terms and operators): each is an op in Transform's graph, run
on every example.
"""
from __future__ import annotations

import ast
import dataclasses
import math
from typing import Any, Callable, Mapping

from tfx_mtl.errors import InputError

_BIN_OPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}
_COMPARE_OPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
}


# Why these bounds: the module docstring.
MAX_LENGTH = 1000
MAX_DEPTH = 32
MAX_NODES = 128


class LabelExprError(InputError):
    """The label text is not a valid label expression."""

    def __init__(self, message: str):
        super().__init__("label", message)


@dataclasses.dataclass(frozen=True)
class LabelExpr:
    """A parsed label expression.

    Attributes:
      text: the source text, as written in the spec.
      columns: the columns it reads, in order of first use.
      kind: ``"column"`` (a bare column), ``"bool"`` (a comparison or logic:
        a binary label) or ``"number"`` (arithmetic: a regression label).
    """

    text: str
    columns: tuple[str, ...]
    kind: str
    _tree: ast.Expression = dataclasses.field(repr=False, compare=False)

    def evaluate(self, values: Mapping[str, Any], *, logical_and=None,
                 logical_or=None, logical_not=None) -> Any:
        """Evaluates on arrays/tensors keyed by column name.

        ``and``/``or``/``not`` cannot be overloaded in Python, so the caller
        passes element-wise functions for them (``np.logical_and`` or
        ``tf.logical_and``); the defaults use ``& | ~``, which NumPy and
        TensorFlow both overload for booleans.
        """
        logic = {
            "and": logical_and or (lambda a, b: a & b),
            "or": logical_or or (lambda a, b: a | b),
            "not": logical_not or (lambda a: ~a),
        }
        return _eval(self._tree.body, values, logic)

    def string_comparisons(self) -> list[tuple[str, str]]:
        """(column, literal) of each ``column == 'text'`` or ``!=`` in the expression: what
        the label checks look for in the data when a label comes out constant."""
        found = []
        for node in ast.walk(self._tree):
            if not isinstance(node, ast.Compare) or not isinstance(node.ops[0], (ast.Eq, ast.NotEq)):
                continue
            sides = (node.left, node.comparators[0])
            names = [s.id for s in sides if isinstance(s, ast.Name) and s.id in self.columns]
            strings = [s.value for s in sides
                       if isinstance(s, ast.Constant) and isinstance(s.value, str)]
            if names and strings:
                found.append((names[0], strings[0]))
        return found


def parse(text: str) -> LabelExpr:
    """Parses label text, refusing anything outside the safe subset or the bounds."""
    if not isinstance(text, str) or not text.strip():
        raise LabelExprError("must be a column name or an expression string")
    text = text.strip()
    if len(text) > MAX_LENGTH:
        raise LabelExprError(f"is {len(text)} characters long; a label expression may have "
                             f"at most {MAX_LENGTH}")
    source, quoted = _unquote(text)
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as e:
        raise LabelExprError(f"cannot parse {text!r}: {e.msg}") from None
    except (RecursionError, MemoryError):
        raise LabelExprError(f"{_short(text)} is too deeply nested to parse; a label "
                             f"expression may nest at most {MAX_DEPTH} levels") from None
    nodes = [node for node in ast.walk(tree.body) if not isinstance(node, ast.expr_context)]
    if len(nodes) > MAX_NODES:
        raise LabelExprError(f"{_short(text)} has more than {MAX_NODES} terms and operators; "
                             "a label is a small formula")
    names = sorted((n for n in nodes if isinstance(n, ast.Name)), key=lambda n: n.col_offset)
    for name in names:
        name.id = quoted.get(name.id, name.id)
    columns = tuple(dict.fromkeys(n.id for n in names))  # in order of first use
    kind = _check(tree.body, text, depth=1)
    if not columns:
        raise LabelExprError(f"{_short(text)} reads no column: a constant is no label")
    return LabelExpr(text=text, columns=columns, kind=kind.name, _tree=tree)


_PLACEHOLDER = "_quoted_column_"
_QUOTES = "'\""


def _unquote(text: str) -> tuple[str, dict[str, str]]:
    """``text`` with each backtick-quoted column replaced by a placeholder name, and
    placeholder -> column. String literals ('...' or "...", backslash escapes) are
    skipped, so a backtick inside one is the string's."""
    prefix = _PLACEHOLDER
    while prefix in text:  # a placeholder must not be a name the text already uses
        prefix = f"_{prefix}"
    out: list[str] = []
    quoted: dict[str, str] = {}
    i = 0
    while i < len(text):
        char = text[i]
        if char in _QUOTES:
            end = i + 1
            while end < len(text) and text[end] != char:
                end += 2 if text[end] == "\\" else 1
            out.append(text[i:end + 1])
            i = end + 1
        elif char == "`":
            end = text.find("`", i + 1)
            if end < 0:
                raise LabelExprError(f"unterminated backtick in {_short(text)}: a quoted column "
                                     "is written `column name`, closed by a second backtick")
            column = text[i + 1:end]
            if not column:
                raise LabelExprError(f"empty backticks `` in {_short(text)}: write the column's "
                                     "name between them")
            placeholder = next((p for p, c in quoted.items() if c == column),
                               f"{prefix}{len(quoted)}")
            quoted[placeholder] = column
            # Spaces keep the placeholder a name of its own next to what surrounds it.
            out.append(f" {placeholder} ")
            i = end + 1
        else:
            out.append(char)
            i += 1
    return "".join(out).strip(), quoted


def _short(text: str) -> str:
    return repr(text if len(text) <= 60 else f"{text[:57]}...")


class _Kind:
    """What :func:`_check` returns for a subexpression that reads a column (a constant
    one is folded to its value): a bare column, arithmetic, or a comparison/logic."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


COLUMN, NUMBER, BOOL = _Kind("column"), _Kind("number"), _Kind("bool")


def _check(node: ast.AST, text: str, depth: int) -> Any:
    """Refuses what is outside the subset or could fail on tensors; returns the node's
    kind, or the value of a constant subexpression (folded here, once)."""
    if depth > MAX_DEPTH:
        raise LabelExprError(f"{_short(text)} is nested deeper than {MAX_DEPTH} levels")
    if isinstance(node, ast.Name):
        return COLUMN
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float, str)):
            raise LabelExprError(f"unsupported constant {node.value!r} in {text!r}")
        return _finite(node.value, text)
    if isinstance(node, ast.Compare):
        if len(node.ops) != 1 or type(node.ops[0]) not in _COMPARE_OPS:
            raise LabelExprError(
                f"only one comparison (> >= < <= == !=) per term is allowed in {text!r}")
        sides = [_check(child, text, depth + 1)
                 for child in (node.left, node.comparators[0])]
        if not any(isinstance(side, _Kind) for side in sides):
            raise LabelExprError(f"in {_short(text)}, a comparison reads no column (it "
                                 "compares two constants)")
        return BOOL
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN_OPS:
        left, right = (_number(child, text, depth) for child in (node.left, node.right))
        if isinstance(right, _Kind) or isinstance(left, _Kind):
            if isinstance(node.op, ast.Div) and not isinstance(right, _Kind) and right == 0:
                raise LabelExprError(f"division by zero in {text!r}")
            return NUMBER
        try:
            return _finite(_BIN_OPS[type(node.op)](left, right), text)
        except ZeroDivisionError:
            raise LabelExprError(f"division by zero in {text!r}") from None
        except OverflowError:
            raise LabelExprError(f"a constant in {_short(text)} is not a finite number") from None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        operand = _number(node.operand, text, depth)
        return NUMBER if isinstance(operand, _Kind) else -operand
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        _truth(node.operand, text, depth)
        return BOOL
    if isinstance(node, ast.BoolOp):
        for value in node.values:
            _truth(value, text, depth)
        return BOOL
    raise LabelExprError(
        f"unsupported syntax {type(node).__name__!r} in {text!r}; allowed: column "
        "names, numbers, strings, + - * /, one comparison, and/or/not")


def _number(node: ast.AST, text: str, depth: int) -> Any:
    """An operand of + - * /: a number, a column or arithmetic."""
    value = _check(node, text, depth + 1)
    if isinstance(value, str):
        raise LabelExprError(f"in {_short(text)}, {value[:20]!r}: a string may only be "
                             "compared (column == 'value'), not computed with")
    if value is BOOL:
        raise LabelExprError(f"in {_short(text)}, a comparison or and/or/not is computed "
                             "with + - * /; it is true/false, not a number")
    return value


def _truth(node: ast.AST, text: str, depth: int) -> None:
    """An operand of and/or/not: a comparison, logic or a (0/1) column."""
    value = _check(node, text, depth + 1)
    if value is BOOL or value is COLUMN:
        return
    if isinstance(value, str):
        raise LabelExprError(f"in {_short(text)}, {value[:20]!r}: a string may only be "
                             "compared (column == 'value'), not used as true/false")
    raise LabelExprError(f"in {_short(text)}, and/or/not need comparisons or columns, "
                         "not a number or arithmetic")


def _finite(value: Any, text: str) -> Any:
    """A numeric constant must be a finite float64 (what the tensors compute in)."""
    if isinstance(value, str):
        return value
    try:
        ok = math.isfinite(float(value))
    except OverflowError:
        ok = False
    if not ok:
        raise LabelExprError(f"a constant in {_short(text)} is not a finite number")
    return value


def _eval(node: ast.AST, values: Mapping[str, Any], logic: Mapping[str, Callable]) -> Any:
    if isinstance(node, ast.Name):
        return values[node.id]
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.BinOp):
        return _BIN_OPS[type(node.op)](_eval(node.left, values, logic),
                                       _eval(node.right, values, logic))
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, values, logic)
        return logic["not"](operand) if isinstance(node.op, ast.Not) else -operand
    if isinstance(node, ast.Compare):
        return _COMPARE_OPS[type(node.ops[0])](_eval(node.left, values, logic),
                                               _eval(node.comparators[0], values, logic))
    if isinstance(node, ast.BoolOp):
        combine = logic["and"] if isinstance(node.op, ast.And) else logic["or"]
        result = _eval(node.values[0], values, logic)
        for value in node.values[1:]:
            result = combine(result, _eval(value, values, logic))
        return result
    raise AssertionError(f"unchecked node {node!r}")  # _check rules this out
