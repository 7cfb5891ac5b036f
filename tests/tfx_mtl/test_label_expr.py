import numpy as np
import pytest

from tfx_mtl import label_expr


def test_bare_column_is_a_column_label():
    expr = label_expr.parse("fare")
    assert expr.kind == "column" and expr.columns == ("fare",)


def test_threshold_on_two_columns_evaluates_elementwise():
    expr = label_expr.parse("tips > 0.2 * fare")
    assert expr.kind == "bool" and expr.columns == ("tips", "fare")
    tips = np.array([3.0, 1.0, 2.0])
    fare = np.array([10.0, 10.0, 10.0])  # 20% of 10 is 2: only 3 > 2
    np.testing.assert_array_equal(expr.evaluate({"tips": tips, "fare": fare}),
                                  [True, False, False])


def test_arithmetic_is_a_number_label():
    expr = label_expr.parse("trip_seconds / 60 - 1")
    assert expr.kind == "number"
    np.testing.assert_allclose(expr.evaluate({"trip_seconds": np.array([120.0, 60.0])}), [1.0, 0.0])


def test_logic_and_strings():
    expr = label_expr.parse("payment_type == 'Cash' and not (tips > 0)")
    assert expr.kind == "bool"
    got = expr.evaluate({"payment_type": np.array(["Cash", "Cash", "Card"]),
                         "tips": np.array([0.0, 1.0, 0.0])},
                        logical_and=np.logical_and, logical_not=np.logical_not)
    np.testing.assert_array_equal(got, [True, False, False])


@pytest.mark.parametrize("text", [
    "__import__('os').system('true')",  # calls
    "fare.real",  # attributes
    "fare[0]",  # subscripts
    "lambda: 1",
    "1 < fare < 3",  # chained comparison
    "fare ** 2",  # operator outside the subset
    "True",
    "",
    "fare >",
])
def test_refuses_anything_outside_the_safe_subset(text):
    with pytest.raises(label_expr.LabelExprError):
        label_expr.parse(text)


# -- expressions that could blow up are refused when the spec loads -------------------

def test_a_20000_term_chain_is_refused_not_a_recursion_error():
    with pytest.raises(label_expr.LabelExprError, match="characters long"):
        label_expr.parse(" + ".join(["fare"] * 20000))


def test_a_recursion_error_while_parsing_becomes_a_label_error():
    # ast.parse recurses once per nested term; called deep in a stack (here: a
    # recursion limit just above this frame's depth), even a short chain exhausts it.
    import inspect
    import sys
    text = " + ".join(["a"] * 250)
    assert len(text) <= label_expr.MAX_LENGTH
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + 40)
    try:
        with pytest.raises(label_expr.LabelExprError, match="too deeply nested"):
            label_expr.parse(text)
    finally:
        sys.setrecursionlimit(limit)


@pytest.mark.parametrize("text, needle", [
    (" + ".join(["fare"] * (label_expr.MAX_DEPTH + 1)), "nested deeper"),
    ("-" * (label_expr.MAX_DEPTH + 1) + "fare", "nested deeper"),
    (" or ".join(["fare > 1"] * 50), "has more than"),
])
def test_size_and_depth_are_bounded(text, needle):
    assert len(text) <= label_expr.MAX_LENGTH
    with pytest.raises(label_expr.LabelExprError, match=needle):
        label_expr.parse(text)


def test_the_bounds_admit_a_realistic_label():
    text = ("(payment_type == 'Cash' or payment_type == 'Credit Card') and tips > 0.2 * fare "
            "and trip_seconds / 60 > 5 and not (trip_miles < 0.1)")
    assert label_expr.parse(text).columns == (
        "payment_type", "tips", "fare", "trip_seconds", "trip_miles")
    label_expr.parse(" + ".join(["fare"] * label_expr.MAX_DEPTH))


@pytest.mark.parametrize("text", [
    "'a' * 100000000000",  # repetition: exhausts memory when evaluated
    "fare > 1 and 'a' * 100000000000 == payment_type",
    "payment_type + 'x'",
    "-'a' < fare",
    "payment_type == 'Cash' and 'x'",
])
def test_strings_may_only_be_compared(text):
    with pytest.raises(label_expr.LabelExprError, match="a string may only be compared"):
        label_expr.parse(text)


@pytest.mark.parametrize("text, needle", [
    ("fare + 1 / 0", "division by zero"),
    ("fare / (2 - 2)", "division by zero"),
    ("fare * 1e999", "not a finite number"),
    ("fare * (1e308 * 10)", "not a finite number"),
    ("fare + " + "9" * 400, "not a finite number"),
])
def test_constant_arithmetic_that_fails_or_overflows_is_refused(text, needle):
    with pytest.raises(label_expr.LabelExprError, match=needle):
        label_expr.parse(text)


@pytest.mark.parametrize("text", ["1", "2 > 1", "'Cash'", "3 * 4 - 1", "-1"])
def test_a_label_must_read_a_column(text):
    with pytest.raises(label_expr.LabelExprError, match="reads no column"):
        label_expr.parse(text)


@pytest.mark.parametrize("text, needle", [
    ("(fare > 1) * 2", "true/false, not a number"),  # TensorFlow has no bool arithmetic
    ("-(fare > 1 or tips > 1)", "true/false, not a number"),
    ("fare * 2 and tips > 1", "and/or/not need comparisons or columns"),
    ("not 1 or fare > 2", "and/or/not need comparisons or columns"),
    ("fare > 1 and 'a' < 1", "a comparison reads no column"),  # a TypeError in Transform
])
def test_terms_that_would_fail_on_tensors_are_refused(text, needle):
    with pytest.raises(label_expr.LabelExprError, match=needle):
        label_expr.parse(text)


def test_a_zero_one_column_may_be_negated_or_combined():
    expr = label_expr.parse("not flag or fare > 2")
    assert expr.kind == "bool" and expr.columns == ("flag", "fare")
    got = expr.evaluate({"flag": np.array([True, True, False]), "fare": np.array([1.0, 3.0, 1.0])})
    np.testing.assert_array_equal(got, [False, True, True])


def test_a_backtick_quotes_a_column_of_any_characters_but_a_backtick():
    expr = label_expr.parse("`marital-status` == 'Never-married' and `hours per week` > 40")
    assert expr.columns == ("marital-status", "hours per week")
    assert expr.kind == "bool"
    values = {"marital-status": np.array(["Never-married", "Never-married", "Divorced"]),
              "hours per week": np.array([50.0, 20.0, 50.0])}
    assert expr.evaluate(values, logical_and=np.logical_and).tolist() == [True, False, False]


def test_quoted_and_unquoted_names_are_one_column_and_strings_keep_their_backticks():
    assert label_expr.parse("`fare` + fare * 2").columns == ("fare",)
    expr = label_expr.parse("`a.b` == 'x`y'")
    assert expr.columns == ("a.b",)
    assert expr.evaluate({"a.b": np.array(["x`y", "x"])}).tolist() == [True, False]
    # A column named like the placeholder the parser uses is still itself.
    assert label_expr.parse("`_quoted_column_0` + _quoted_column_0 + `x`").columns == (
        "_quoted_column_0", "x")


@pytest.mark.parametrize("text, message", [
    ("`marital-status == 'x'", "unterminated backtick"),
    ("`` == 'x'", "empty backticks"),
    ("fare + `tips", "unterminated backtick"),
])
def test_bad_backticks_are_refused_clearly(text, message):
    with pytest.raises(label_expr.LabelExprError, match=message):
        label_expr.parse(text)
