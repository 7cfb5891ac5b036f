"""Safe keys of data columns: the rule, and how two columns of one key are told apart."""
import re

import pytest

from tfx_mtl import column_keys, naming


@pytest.mark.parametrize("column, key", [
    ("trip_miles", "trip_miles"), ("hours-per-week", "hours_per_week"),
    ("marital status", "marital_status"), ("  Body Mass (g) ", "Body_Mass_g"),
    ("a__label", "a_label"), ("2nd-income", "c_2nd_income"), ("€%", "column"),
    ("größe", "gr_e")])
def test_safe_key_is_words_of_ascii_letters_and_digits(column, key):
    assert column_keys.safe_key(column) == key
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]*(_[A-Za-z0-9]+)*", key)


def test_no_key_can_meet_a_key_derived_from_a_task():
    """Every task-derived key has ``__`` (naming); no column key, nor its _xf/_vocab, has."""
    for column in ("x__label", "_x_", "x__mask", "t__label_vocab"):
        key = column_keys.safe_key(column)
        assert "__" not in naming.feature_key(key) and "__" not in naming.feature_vocab_name(key)


def test_colliding_columns_get_distinct_keys_whatever_their_order():
    columns = ["hours per week", "hours-per-week", "hours_per_week", "hours_per_week_2"]
    expected = {"hours_per_week": "hours_per_week", "hours_per_week_2": "hours_per_week_2",
                "hours per week": "hours_per_week_3", "hours-per-week": "hours_per_week_4"}
    assert column_keys.column_keys(columns) == expected
    assert column_keys.column_keys(reversed(columns)) == expected
    # Without the columns that are their own keys, the others take the plain key in
    # sorted order (' ' sorts before '-').
    assert column_keys.column_keys(["hours-per-week", "hours per week"]) == {
        "hours-per-week": "hours_per_week_2", "hours per week": "hours_per_week"}
