"""preprocessing_fn run with tensorflow-transform's Beam implementation."""
import math

import pytest

from tfx_mtl import naming

pytestmark = pytest.mark.e2e  # the real Transform (TFT on Beam): tests/models/conftest.py


def test_labels_and_masks(transformed):
    rows, _ = transformed
    # big: tips > 0.2 * fare -> 3 > 2 yes, 0 > 4 no, tips missing -> no label
    assert [r["big__label"] for r in rows] == [1, 0, 0]
    assert [r["big__mask"] for r in rows] == [1.0, 1.0, 0.0]
    # kind: pay2 missing in the third row
    assert [r["kind__mask"] for r in rows] == [1.0, 1.0, 0.0]


def test_regression_label_statistics_cover_labelled_rows(transformed):
    rows, _ = transformed
    assert [r["fare__label"] for r in rows] == [10.0, 20.0, 30.0]
    assert rows[0]["fare__label_mean"] == pytest.approx(20.0)
    assert rows[0]["fare__label_std"] == pytest.approx(math.sqrt(200 / 3))  # population std


def test_missing_numeric_is_imputed_with_the_mean_then_scaled(transformed):
    rows, _ = transformed
    # miles present: 1 and 3 -> mean 2; imputed row is 2 -> z-scores -1.2247, 0, 1.2247
    assert [round(float(r["miles_xf"]), 4) for r in rows] == [-1.2247, 0.0, 1.2247]


def test_vocabularies_are_named_for_the_model(transformed):
    rows, tft_output = transformed
    assert sorted(tft_output.vocabulary_by_name(naming.feature_vocab_name("pay"))) == [b"card", b"cash"]
    assert sorted(tft_output.vocabulary_by_name(naming.label_vocab_name("kind"))) == [b"a", b"b"]
    assert all(0 <= r["pay_xf"] < 3 for r in rows)  # 2 words + 1 OOV bucket
