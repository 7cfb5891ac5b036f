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
