"""End to end: CSVs as public datasets ship them, through the real DAG and the dev server.

An Adult-like file (hyphenated headers, one with a space, ``?`` for missing, a curated
schema naming those columns) and a penguins-like one (``NA`` for missing, in numeric
columns, a label column and a categorical feature; SchemaGen's inferred schema) train,
are judged, pushed and served, the rows sent keyed by the header's own names.
"""
import csv
import json
import os
import random

import numpy as np
import pytest
import tensorflow as tf
import yaml
from taxi_support import run_tfx_mtl

from tfx_mtl import naming
from tfx_mtl.results import metadata

pytestmark = [pytest.mark.e2e, pytest.mark.subprocess]  # the installed tfx-mtl, the real DAG

ADULT_COLUMNS = ["age", "hours-per-week", "marital status", "workclass", "educational-num",
                 "capital-gain", "income"]
STATUSES = ["Never-married", "Married-civ-spouse", "Divorced"]
WORKCLASSES = ["Private", "Self-emp", "State-gov"]


def _adult_rows(n=1500, seed=0):
    rng = random.Random(seed)
    for _ in range(n):
        age, hours, edu = rng.randint(18, 80), rng.randint(10, 70), rng.randint(1, 16)
        status = rng.choice(STATUSES)
        score = 0.05 * (age - 40) + 0.08 * (hours - 40) + 0.3 * (edu - 8) + (
            1.5 if status == "Married-civ-spouse" else 0) + rng.gauss(0, 1)
        yield {"age": age, "hours-per-week": "?" if rng.random() < 0.05 else hours,
               "marital status": status,
               "workclass": "?" if rng.random() < 0.1 else rng.choice(WORKCLASSES),
               "educational-num": edu,
               "capital-gain": "?" if rng.random() < 0.05 else round(100 * edu + 50 * rng.random()),
               "income": ">50K" if score > 0.5 else "<=50K"}


def _write_csv(path, columns, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


UNBOUNDED = {"max_regression": "none", "reason": "a mechanism test, not a transfer claim"}

ADULT_SPEC = {
    "name": "adult_like",
    "schema": "schema.pbtxt",
    "features": [{"name": "age", "kind": "numeric"}, {"name": "hours-per-week", "kind": "numeric"},
                 {"name": "marital status", "kind": "categorical"},
                 {"name": "workclass", "kind": "categorical"},
                 {"name": "educational-num", "kind": "bucketized", "buckets": 4}],
    "tasks": [{"name": "rich", "type": "binary", "label": "`income` == '>50K'",
               "metrics": [{"name": "auc", **UNBOUNDED}]},
              {"name": "gain", "type": "regression", "label": "`capital-gain`",
               "role": "auxiliary", "metrics": [{"name": "rmse", **UNBOUNDED}]}],
    "evaluation": {"bootstrap_samples": 100, "slices": ["marital status"]},
    "data": {"missing_values": ["?"]},
}
# The curated schema names the header's columns as they are; with "?" read as missing,
# the numeric columns are INT.
ADULT_SCHEMA = "".join(f'feature {{ name: "{name}" type: {kind} }}\n' for name, kind in [
    ("age", "INT"), ("hours-per-week", "INT"), ("marital status", "BYTES"),
    ("workclass", "BYTES"), ("educational-num", "INT"), ("capital-gain", "INT"),
    ("income", "BYTES")])


def _run(tmp_path, data_path, spec, *extra, expect=0):
    spec_path = tmp_path / "tasks.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    summary = tmp_path / "summary.json"
    result = run_tfx_mtl("run", "--data", str(data_path), "--spec", str(spec_path),
                         "--output-dir", str(tmp_path / "runs"), "--train-steps", "60",
                         "--eval-steps", "2", "--batch-size", "64", "--summary-json",
                         str(summary), *extra, expect=expect)
    return result, (json.loads(summary.read_text()) if expect == 0 else None)


def _output(tmp_path, pipeline, node, key):
    """The URI of ``node``'s output ``key`` in the latest run."""
    store = metadata.open_store(str(tmp_path / "runs" / "metadata.sqlite"))
    _, executions = metadata.latest_run(store, pipeline)
    from ml_metadata.proto import metadata_store_pb2
    for execution in executions:
        names = [c.name for c in store.get_contexts_by_execution(execution.id)]
        if f"{pipeline}.{node}" in names:
            for event in store.get_events_by_execution_ids([execution.id]):
                if (event.type == metadata_store_pb2.Event.OUTPUT
                        and event.path.steps[0].key == key):
                    return store.get_artifacts_by_id([event.artifact_id])[0].uri
    raise AssertionError(f"no output {key} of {node}")


def _example_types(examples_uri, split="train"):
    """{feature: kind} of the first examples ExampleGen wrote."""
    files = tf.io.gfile.glob(os.path.join(examples_uri, f"Split-{split}", "*"))
    kinds = {}
    for record in tf.data.TFRecordDataset(files, "GZIP").take(50):
        example = tf.train.Example.FromString(record.numpy())
        for name, feature in example.features.feature.items():
            if feature.WhichOneof("kind"):
                kinds[name] = feature.WhichOneof("kind")
    return kinds


def test_adult_like_columns_train_export_and_serve_by_their_header_names(tmp_path):
    data_path = _write_csv(tmp_path / "adult.csv", ADULT_COLUMNS, _adult_rows())
    (tmp_path / "schema.pbtxt").write_text(ADULT_SCHEMA)
    _, summary = _run(tmp_path, data_path, ADULT_SPEC)
    assert {c["state"] for c in summary["components"]} == {"COMPLETE"}
    assert summary["pushed"], summary
    pipeline = naming.pipeline_name("adult_like")
    kinds = _example_types(_output(tmp_path, pipeline, naming.EXAMPLE_GEN["csv"], "examples"))
    # '?' was read as missing: the numeric columns kept their type.
    assert kinds["hours-per-week"] == kinds["capital-gain"] == "int64_list"
    transform = _output(tmp_path, pipeline, "Transform", "transform_graph")
    vocab = tf.io.gfile.GFile(os.path.join(transform, "transform_fn", "assets",
                                           "workclass_vocab")).read().split()
    assert sorted(vocab) == sorted(WORKCLASSES)  # no '?' class
    assert tf.io.gfile.exists(os.path.join(transform, "transform_fn", "assets",
                                           "marital_status_vocab"))
    assert summary["tasks"]["rich"]["metrics"]["auc"] > 0.7

    from serving_support import serve
    from tfx_mtl.serving.client import ServingClient
    from tfx_mtl.serving.examples import RowEncoder
    rows = [{"age": 45, "hours-per-week": 60, "marital status": "Married-civ-spouse",
             "workclass": "Private", "educational-num": 15},
            {"age": 19, "hours-per-week": None, "marital status": "Never-married",
             "workclass": None, "educational-num": 3}]
    with serve(os.path.dirname(summary["pushed"]), "adult") as server:
        with ServingClient(server.address, "adult", encoder=RowEncoder(), timeout=30) as c:
            out = c.predict_all(rows)
    probability = out["rich"]["probability"]
    assert probability.shape == (2,) and probability[0] > probability[1]
    assert np.all(np.isfinite(out["gain"]["value"]))


PENGUIN_COLUMNS = ["species", "island", "bill_length_mm", "flipper_length_mm",
                   "body_mass_g", "sex"]
SPECIES = {"Adelie": (38.8, 190, 3700), "Gentoo": (47.5, 217, 5076), "Chinstrap": (48.8, 196, 3733)}


def _penguin_rows(n=344, seed=1):
    rng = random.Random(seed)
    for i in range(n):
        species = rng.choice(sorted(SPECIES))
        bill, flipper, mass = SPECIES[species]
        row = {"species": species, "island": rng.choice(["Biscoe", "Dream", "Torgersen"]),
               "bill_length_mm": round(rng.gauss(bill, 2.5), 1),
               "flipper_length_mm": round(rng.gauss(flipper, 6)),
               "body_mass_g": round(rng.gauss(mass, 300)), "sex": rng.choice(["male", "female"])}
        for column in ("bill_length_mm", "flipper_length_mm", "body_mass_g", "sex"):
            if i % 23 == PENGUIN_COLUMNS.index(column):  # a few NA in each, as in the data
                row[column] = "NA"
        yield row


PENGUIN_SPEC = {
    "name": "penguins",
    "features": [{"name": "bill_length_mm", "kind": "numeric"},
                 {"name": "flipper_length_mm", "kind": "bucketized", "buckets": 4},
                 {"name": "island", "kind": "categorical"}, {"name": "sex", "kind": "categorical"}],
    "tasks": [{"name": "species", "type": "multiclass", "label": "species",
               "metrics": [{"name": "accuracy", **UNBOUNDED}]},
              {"name": "mass", "type": "regression", "label": "body_mass_g", "role": "auxiliary",
               "metrics": [{"name": "rmse", **UNBOUNDED}]}],
    "evaluation": {"bootstrap_samples": 100},
}


def test_penguins_like_na_is_refused_before_the_run_then_read_as_missing(tmp_path):
    data_path = _write_csv(tmp_path / "penguins.csv", PENGUIN_COLUMNS, _penguin_rows())
    refused, _ = _run(tmp_path, data_path, PENGUIN_SPEC, expect=2)
    assert "column 'bill_length_mm' (numeric feature 'bill_length_mm') holds 'NA'" in refused.stderr
    assert "data: {missing_values: ['NA']}" in refused.stderr
    assert not (tmp_path / "runs" / "metadata.sqlite").exists()  # nothing ran

    _, summary = _run(tmp_path, data_path, {**PENGUIN_SPEC, "data": {"missing_values": ["NA"]}})
    assert {c["state"] for c in summary["components"]} == {"COMPLETE"}
    pipeline = naming.pipeline_name("penguins")
    kinds = _example_types(_output(tmp_path, pipeline, naming.EXAMPLE_GEN["csv"], "examples"))
    assert kinds["bill_length_mm"] == "float_list" and kinds["body_mass_g"] == "int64_list"
    transform = _output(tmp_path, pipeline, "Transform", "transform_graph")
    assets = os.path.join(transform, "transform_fn", "assets")
    assert sorted(tf.io.gfile.GFile(os.path.join(assets, "sex_vocab")).read().split()) == [
        "female", "male"]
    assert summary["tasks"]["species"]["metrics"]["accuracy"] > 0.6
