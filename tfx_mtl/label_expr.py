"""Label expressions: a label is a column or a small arithmetic/comparison formula.

A task's label in the spec is written as Python-like text, e.g. ``fare`` or
``tips > 0.2 * fare``. It is parsed once with :mod:`ast` and only a tiny, safe
subset is accepted (column names, numbers, strings, ``+ - * /``, unary minus,
one comparison, ``and``/``or``/``not``), so a spec can never run code. The same
compiled expression is evaluated on NumPy arrays in tests and on TensorFlow
tensors inside ``preprocessing_fn``: it only uses Python operators, which both
libraries overload element-wise.
"""
from __future__ import annotations

import ast
import dataclasses
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


def parse(text: str) -> LabelExpr:
    """Parses label text, refusing anything outside the safe subset."""
    if not isinstance(text, str) or not text.strip():
        raise LabelExprError("must be a column name or an expression string")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise LabelExprError(f"cannot parse {text!r}: {e.msg}") from None
    columns: list[str] = []
    _check(tree.body, columns, text)
    body = tree.body
    if isinstance(body, ast.Name):
        kind = "column"
    elif isinstance(body, (ast.Compare, ast.BoolOp)) or (
            isinstance(body, ast.UnaryOp) and isinstance(body.op, ast.Not)):
        kind = "bool"
    else:
        kind = "number"
    return LabelExpr(text=text.strip(), columns=tuple(columns), kind=kind, _tree=tree)


def _check(node: ast.AST, columns: list[str], text: str) -> None:
    if isinstance(node, ast.Name):
        if node.id not in columns:
            columns.append(node.id)
    elif isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float, str)):
            raise LabelExprError(f"unsupported constant {node.value!r} in {text!r}")
    elif isinstance(node, ast.BinOp) and type(node.op) in _BIN_OPS:
        _check(node.left, columns, text)
        _check(node.right, columns, text)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Not)):
        _check(node.operand, columns, text)
    elif isinstance(node, ast.Compare):
        if len(node.ops) != 1 or type(node.ops[0]) not in _COMPARE_OPS:
            raise LabelExprError(
                f"only one comparison (> >= < <= == !=) per term is allowed in {text!r}")
        _check(node.left, columns, text)
        _check(node.comparators[0], columns, text)
    elif isinstance(node, ast.BoolOp):
        for value in node.values:
            _check(value, columns, text)
    else:
        raise LabelExprError(
            f"unsupported syntax {type(node).__name__!r} in {text!r}; allowed: column "
            "names, numbers, strings, + - * /, one comparison, and/or/not")


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
