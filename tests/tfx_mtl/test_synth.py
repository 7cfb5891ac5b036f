"""The synthetic generator: exact task relatedness, determinism, streaming output."""
import csv
import math
import tracemalloc

import numpy as np
import pytest
import yaml

from tfx_mtl import data, synth, task_spec
from tfx_mtl import cli


def _config(**kwargs):
    kwargs.setdefault("rows", 100)
    kwargs.setdefault("features", 8)
    return synth.SynthConfig(**kwargs)


def _cosines(w):
    unit = w / np.linalg.norm(w, axis=1, keepdims=True)
    return unit @ unit.T


# --- pure functions, checked against hand computations ---------------------------

def test_cholesky_factor_of_two_tasks_matches_hand_computation():
    # C = [[1, .6], [.6, 1]]: L[0] = [1, 0]; L[1, 0] = .6 / 1 = .6;
    # L[1, 1] = sqrt(1 - .6^2) = sqrt(.64) = .8
    np.testing.assert_allclose(synth.cholesky_factor(2, 0.6), [[1, 0], [0.6, 0.8]], atol=1e-12)


def test_cholesky_factor_at_correlation_one_is_the_column_of_ones():
    # C = all ones = 1 1^T, so L = [1, 1, 1]^T padded with zeros.
    np.testing.assert_array_equal(synth.cholesky_factor(3, 1.0), [[1, 0, 0], [1, 0, 0], [1, 0, 0]])


def test_labels_match_hand_computation():
    # Row 0: z = 1, alpha = [2, 0], beta = [-2, pi/2], eps = 0:
    #   1 + sin(2*1 - 2) + sin(0*1 + pi/2) = 1 + 0 + 1 = 2
    # Row 1: z = .5, eps = .25:  .5 + sin(1 - 2) + sin(pi/2) + .25
    #   = .5 - 0.8414710 + 1 + .25 = 0.9085290
    y = synth.labels(np.array([[1.0], [0.5]]), np.array([2.0, 0.0]),
                     np.array([-2.0, math.pi / 2]), np.array([[0.0], [0.25]]))
    np.testing.assert_allclose(y, [[2.0], [0.9085290]], atol=1e-7)


# --- weight vectors --------------------------------------------------------------

@pytest.mark.parametrize("tasks, rho", [(2, -0.4), (3, -0.4), (5, -0.2)] + [
    (k, rho) for k in (2, 3, 5) for rho in (0.0, 0.5, 0.9, 1.0)])
def test_weight_vectors_have_pairwise_cosine_rho(tasks, rho):
    w = synth.weight_vectors(_config(tasks=tasks, correlation=rho, features=12, seed=3))
    assert w.shape == (tasks, 12)
    expected = np.full((tasks, tasks), rho)
    np.fill_diagonal(expected, 1.0)
    np.testing.assert_allclose(_cosines(w), expected, atol=1e-6)


def test_weight_vectors_have_norm_scale_c():
    w = synth.weight_vectors(_config(tasks=3, correlation=0.3, scale_c=2.5))
    np.testing.assert_allclose(np.linalg.norm(w, axis=1), [2.5, 2.5, 2.5], atol=1e-12)


@pytest.mark.parametrize("tasks, rho", [(3, -0.6), (3, -0.5), (2, -1.0), (4, 1.0001),
                                        (2, float("nan")), (1, 1.5)])
def test_invalid_correlation_is_refused_naming_the_field(tasks, rho):
    with pytest.raises(synth.SynthError, match=r"^correlation: must") as info:
        _config(tasks=tasks, correlation=rho)
    assert info.value.field == "correlation"


def test_correlation_error_states_the_bound():
    with pytest.raises(synth.SynthError, match=r"\(-1/\(K-1\), 1\] for K=3 tasks.*got -0.9"):
        _config(tasks=3, correlation=-0.9)


@pytest.mark.parametrize("kwargs, field", [
    ({"features": 2, "tasks": 3}, "features"),
    ({"rows": 0}, "rows"),
    ({"rows": 2.0}, "rows"),
    ({"tasks": True}, "tasks"),
    ({"seed": -1}, "seed"),
    ({"noise": -0.1}, "noise"),
    ({"scale_c": 0}, "scale_c"),
    ({"label_scales": (1.0,)}, "label_scales"),
    ({"label_scales": (1.0, 0.0)}, "label_scales[1]"),
    ({"task_types": ("regression", "ordinal")}, "task_types[1]"),
    ({"task_types": ("binary",)}, "task_types"),
    ({"task_types": ("regression", "binary"), "label_scales": (1.0, 10.0)}, "label_scales[1]"),
])
def test_bad_arguments_are_refused_naming_the_field(kwargs, field):
    with pytest.raises(synth.SynthError) as info:
        _config(**kwargs)
    assert info.value.field == field and str(info.value).startswith(f"{field}: ")


def test_bad_chunk_rows_is_refused_before_iterating():
    with pytest.raises(synth.SynthError, match="^chunk_rows: "):
        synth.chunks(_config(), chunk_rows=0)


# --- the stream ------------------------------------------------------------------

def test_columns_names_and_dtypes():
    data = synth.sample(_config(tasks=2, features=3, task_types=["regression", "binary"]))
    assert list(data) == ["x_0", "x_1", "x_2", "task_1", "task_2"]
    assert synth.task_names(_config(tasks=3)) == ("task_1", "task_2", "task_3")
    assert data["x_0"].dtype == np.float32 and data["task_1"].dtype == np.float32
    assert data["task_2"].dtype == np.int64 and set(np.unique(data["task_2"])) <= {0, 1}
    assert all(len(v) == 100 for v in data.values())


def test_same_seed_same_data_other_seed_other_data():
    a, b = synth.sample(_config(seed=7)), synth.sample(_config(seed=7))
    c = synth.sample(_config(seed=8))
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    assert not np.array_equal(a["x_0"], c["x_0"])
    assert not np.array_equal(a["task_1"], c["task_1"])


def test_row_i_does_not_depend_on_rows_or_chunk_size():
    types = ["regression", "binary"]
    short = synth.sample(_config(rows=100, task_types=types))
    long = synth.sample(_config(rows=2_500, task_types=types))
    odd_chunks = list(synth.chunks(_config(rows=2_500, task_types=types), chunk_rows=7))
    assert len(odd_chunks) == 358  # ceil(2500 / 7)
    for name in short:
        np.testing.assert_array_equal(short[name], long[name][:100])
        np.testing.assert_array_equal(np.concatenate([c[name] for c in odd_chunks]), long[name])


def test_correlation_controls_how_related_the_labels_are():
    def label_corr(rho):
        data = synth.sample(_config(rows=20_000, features=20, correlation=rho))
        return np.corrcoef(data["task_1"], data["task_2"])[0, 1]

    unrelated, related = label_corr(0.0), label_corr(0.9)
    assert abs(unrelated) < 0.05  # orthogonal weights: independent projections
    assert related > 0.7 and related > unrelated + 0.6


def test_correlation_one_without_noise_gives_identical_labels():
    data = synth.sample(_config(tasks=3, correlation=1.0, noise=0.0))
    np.testing.assert_array_equal(data["task_1"], data["task_2"])
    np.testing.assert_array_equal(data["task_1"], data["task_3"])
    assert np.std(data["task_1"]) > 0.1


def test_noise_is_the_only_difference_at_correlation_one():
    data = synth.sample(_config(rows=5_000, correlation=1.0, noise=0.1))
    # y_1 - y_2 = eps_1 - eps_2 ~ N(0, 2 * 0.1^2): std 0.1414
    assert abs(np.std(data["task_1"] - data["task_2"]) - 0.1414) < 0.01


def test_label_scales_multiply_labels_exactly():
    plain = synth.sample(_config(tasks=2))
    scaled = synth.sample(_config(tasks=2, label_scales=(1.0, 1000.0)))
    np.testing.assert_array_equal(scaled["x_0"], plain["x_0"])
    np.testing.assert_array_equal(scaled["task_1"], plain["task_1"])
    np.testing.assert_array_equal(scaled["task_2"], plain["task_2"] * np.float32(1000))


def test_binary_labels_are_balanced_at_the_median_of_the_first_2000_rows():
    data = synth.sample(_config(rows=6_000, tasks=2, task_types=("binary", "regression")))
    # The threshold is the median of rows 0..1999: exactly half of them lie above it.
    assert data["task_1"][:2_000].sum() == 1_000
    assert 0.4 < data["task_1"].mean() < 0.6
    # ... and it is the same rows' continuous label: the regression twin at rho=1.
    twin = synth.sample(_config(rows=6_000, tasks=2, correlation=1.0, noise=0.0,
                                task_types=("binary", "regression")))
    above = twin["task_2"] > np.median(twin["task_2"][:2_000])
    np.testing.assert_array_equal(twin["task_1"], above.astype(np.int64))


# --- write() -------------------------------------------------------------------

def _read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def test_write_csv_round_trips_float32_and_writes_a_loadable_spec(tmp_path):
    config = _config(rows=300, tasks=3, task_types=("regression", "binary", "regression"))
    result = synth.write(config, tmp_path / "out")
    assert result["rows"] == 300 and result["data"] == str(tmp_path / "out" / "data.csv")
    header, rows = _read_csv(result["data"])
    assert header == [f"x_{i}" for i in range(8)] + ["task_1", "task_2", "task_3"]
    assert len(rows) == 300
    expected = synth.sample(config)
    for j, name in enumerate(header):
        if name == "task_2":
            assert {r[j] for r in rows} == {"0", "1"}  # ints, not 0.0/1.0
        values = np.array([r[j] for r in rows], dtype=np.float64).astype(expected[name].dtype)
        np.testing.assert_array_equal(values, expected[name])  # exact: %.9g round-trips

    spec = task_spec.load(result["spec"], columns=header)
    assert spec.feature_names == tuple(header[:8])
    assert all(f.kind == "numeric" for f in spec.features)
    t1, t2, t3 = spec.tasks
    assert (t1.type, t1.role, t1.loss, [m.name for m in t1.metrics]) == (
        "regression", "primary", "mse", ["rmse", "mae"])
    assert (t2.type, t2.role, [m.name for m in t2.metrics]) == (
        "binary", "auxiliary", ["auc", "binary_accuracy"])
    assert t3.role == "auxiliary" and t3.standardize  # no label_scales: default
    for task in spec.tasks:  # each bounded in the spec itself, not by the default
        assert task.metrics[0].max_regression == task_spec.MaxRegression(0.01, relative=True)
        assert task.metrics[1].max_regression is None
    text = open(result["spec"]).read()
    assert "standardize" not in text
    assert "tfx-mtl synth --rows 300 --tasks 3 --correlation 0.5 --features 8 --seed 0" in text


def test_label_scales_turn_standardize_off_in_the_spec(tmp_path):
    config = _config(rows=10, label_scales=(1.0, 1000.0))
    result = synth.write(config, tmp_path)
    spec = task_spec.load(result["spec"], columns=_read_csv(result["data"])[0])
    assert [t.standardize for t in spec.tasks] == [False, False]
    text = open(result["spec"]).read()
    assert "standardize: false" in text and "--label-scales 1.0,1000.0" in text
    assert "# label_scales 1000.0: learn in label units" in text
    assert yaml.safe_load(text)["tasks"][1]["standardize"] is False


def test_write_is_byte_identical_for_the_same_arguments(tmp_path):
    config = _config(rows=500, task_types=("binary", "regression"), label_scales=(1.0, 3.0))
    a = synth.write(config, tmp_path / "a", chunk_rows=64)
    b = synth.write(config, tmp_path / "b", chunk_rows=10_000)
    c = synth.write(_config(rows=500, seed=1), tmp_path / "c")
    for key in ("data", "spec"):
        assert open(a[key], "rb").read() == open(b[key], "rb").read()
    assert open(a["data"], "rb").read() != open(c["data"], "rb").read()


def test_write_refuses_existing_data_unless_overwrite(tmp_path):
    synth.write(_config(rows=5), tmp_path)
    with pytest.raises(synth.SynthError, match=r"^out_dir: .*data\.csv already exists"):
        synth.write(_config(rows=6), tmp_path)
    assert len(_read_csv(tmp_path / "data.csv")[1]) == 5  # untouched
    synth.write(_config(rows=6), tmp_path, overwrite=True)
    assert len(_read_csv(tmp_path / "data.csv")[1]) == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv", "tasks.yaml"]  # no .tmp left
    (tmp_path / "data.csv").write_text("")  # an empty file is fair game
    synth.write(_config(rows=7), tmp_path)


def test_files_split_the_rows_into_consecutive_parts_each_with_the_header(tmp_path):
    """10 rows in 3 files (chunks of 4 rows cross the file boundaries): 4, 3, 3 rows,
    which concatenated are the one-file data's rows, and --data DIR reads them all."""
    config = _config(rows=10, features=3)
    one = synth.write(config, tmp_path / "one")
    header, rows = _read_csv(one["data"])
    result = synth.write(config, tmp_path / "many", files=3, chunk_rows=4)
    assert result["data"] == str(tmp_path / "many") and result["files"] == 3
    names = sorted(p.name for p in (tmp_path / "many").iterdir())
    assert names == ["part-00000-of-00003.csv", "part-00001-of-00003.csv",
                     "part-00002-of-00003.csv", "tasks.yaml"]
    parts = [_read_csv(tmp_path / "many" / name) for name in names[:3]]
    assert [h for h, _ in parts] == [header] * 3
    assert [len(r) for _, r in parts] == [4, 3, 3]
    assert [row for _, r in parts for row in r] == rows
    assert data.columns(result["data"]) == header
    assert "--files 3" in (tmp_path / "many" / "tasks.yaml").read_text()


def test_tfrecord_files_hold_the_one_file_records_in_order(tmp_path):
    import tensorflow as tf

    config = _config(rows=9, features=2)
    one = synth.write(config, tmp_path / "one", fmt="tfrecord")
    many = synth.write(config, tmp_path / "many", fmt="tfrecord", files=2, chunk_rows=5)
    files = sorted(str(p) for p in (tmp_path / "many").glob("part-*"))
    assert [p.rsplit("/", 1)[1] for p in files] == ["part-00000-of-00002.tfrecord",
                                                   "part-00001-of-00002.tfrecord"]
    assert [sum(1 for _ in tf.data.TFRecordDataset(f)) for f in files] == [5, 4]
    assert ([r.numpy() for r in tf.data.TFRecordDataset(files)]
            == [r.numpy() for r in tf.data.TFRecordDataset(one["data"])])
    assert data.columns(many["data"]) == data.columns(one["data"])


@pytest.mark.parametrize("files", [0, 11, 2.5])
def test_bad_file_counts_are_refused_naming_the_field(tmp_path, files):
    with pytest.raises(synth.SynthError, match=r"^files: must be an integer from 1 to rows"):
        synth.write(_config(rows=10), tmp_path, files=files)
    assert not tmp_path.joinpath("tasks.yaml").exists()


def test_rewriting_with_other_files_replaces_every_previous_data_file(tmp_path):
    synth.write(_config(rows=6), tmp_path, files=3)
    with pytest.raises(synth.SynthError, match=r"^out_dir: .*part-00000-of-00003\.csv already"):
        synth.write(_config(rows=6), tmp_path)
    synth.write(_config(rows=6), tmp_path, fmt="tfrecord", files=2, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "part-00000-of-00002.tfrecord", "part-00001-of-00002.tfrecord", "tasks.yaml"]
    synth.write(_config(rows=6), tmp_path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv", "tasks.yaml"]


def test_tfrecord_parses_back_to_the_csv_values(tmp_path):
    import tensorflow as tf

    config = _config(rows=40, features=3, task_types=("regression", "binary"))
    header, rows = _read_csv(synth.write(config, tmp_path)["data"])
    result = synth.write(config, tmp_path, fmt="tfrecord", overwrite=True)
    assert not (tmp_path / "data.csv").exists()  # one dataset per directory
    spec = {name: tf.io.FixedLenFeature([], tf.int64 if name == "task_2" else tf.float32)
            for name in header}
    parsed = [tf.io.parse_single_example(r, spec)
              for r in tf.data.TFRecordDataset(result["data"])]
    assert len(parsed) == 40
    for j, name in enumerate(header):
        got = np.array([p[name].numpy() for p in parsed])
        if name == "task_2":
            np.testing.assert_array_equal(got, [int(r[j]) for r in rows])
        else:
            np.testing.assert_array_equal(got, np.array([r[j] for r in rows], np.float64)
                                          .astype(np.float32))


def test_tfrecord_is_what_run_reads_in_canonical_bytes(tmp_path):
    """Features and regression labels are floats, binary labels int64 0/1, under the
    names the spec uses as written; each example is serialized with its features in key
    order (else their order, and the file's bytes, change from one process to the next)."""
    import pyarrow as pa
    import tensorflow as tf
    from tfx_bsl.coders import example_coder

    config = _config(rows=30, features=3, task_types=("regression", "binary"))
    result = synth.write(config, tmp_path, fmt="tfrecord")
    columns = data.columns(str(tmp_path))
    assert columns == ["task_1", "task_2", "x_0", "x_1", "x_2"]
    task_spec.load(result["spec"], columns=columns)
    records = [r.numpy() for r in tf.data.TFRecordDataset(result["data"])]
    batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(records)
    assert {f.name: f.type.value_type for f in batch.schema} == {
        **dict.fromkeys(["x_0", "x_1", "x_2", "task_1"], pa.float32()), "task_2": pa.int64()}
    assert all(r == tf.train.Example.FromString(r).SerializeToString(deterministic=True)
               for r in records)


def test_write_streams_in_constant_memory(tmp_path):
    config = _config(rows=200_000, tasks=2, features=10)
    whole = config.rows * (config.features + config.tasks) * 8  # 19.2 MB as float64
    tracemalloc.start()
    try:
        synth.write(config, tmp_path, chunk_rows=10_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 0.3 * whole, f"peak {peak} bytes vs {whole} for the whole array"
    with open(tmp_path / "data.csv") as f:
        assert sum(1 for _ in f) == 200_001


# --- the CLI -------------------------------------------------------------------

def _cli(argv):
    return cli.main(["synth", *argv])


def test_cli_writes_data_and_spec(tmp_path, capsys):
    out = tmp_path / "d"
    code = _cli(["--rows", "50", "--tasks", "2", "--correlation", "0.3", "--out", str(out),
                 "--features", "4", "--seed", "5", "--label-scales", "1,1000",
                 "--task-types", "regression,regression"])
    assert code == 0
    printed = capsys.readouterr().out
    assert str(out / "data.csv") in printed and str(out / "tasks.yaml") in printed
    assert f"run it: tfx-mtl run --data {out / 'data.csv'} --spec {out / 'tasks.yaml'}" in printed
    header, rows = _read_csv(out / "data.csv")
    assert header == ["x_0", "x_1", "x_2", "x_3", "task_1", "task_2"] and len(rows) == 50
    expected = synth.sample(synth.SynthConfig(rows=50, tasks=2, correlation=0.3, features=4,
                                              seed=5, label_scales=(1.0, 1000.0)))
    np.testing.assert_array_equal(np.array([r[5] for r in rows], np.float64).astype(np.float32),
                                  expected["task_2"])
    task_spec.load(out / "tasks.yaml", columns=header)


def test_cli_files_writes_parts_and_prints_the_directory_to_run(tmp_path, capsys):
    out = tmp_path / "d"
    assert _cli(["--rows", "7", "--tasks", "2", "--correlation", "0", "--out", str(out),
                 "--features", "2", "--files", "2"]) == 0
    printed = capsys.readouterr().out
    assert f"to {out} in 2 files" in printed
    assert f"run it: tfx-mtl run --data {out} --spec {out / 'tasks.yaml'}" in printed
    assert sorted(p.name for p in out.glob("*.csv")) == ["part-00000-of-00002.csv",
                                                        "part-00001-of-00002.csv"]
    assert _cli(["--rows", "1", "--tasks", "2", "--correlation", "0", "--out",
                 str(tmp_path / "e"), "--files", "2"]) == 2
    assert "--files: must be an integer from 1 to rows (1)" in capsys.readouterr().err


def test_cli_bad_correlation_exits_2_naming_the_option(tmp_path, capsys):
    code = _cli(["--rows", "5", "--tasks", "3", "--correlation", "-0.9",
                 "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    assert "--correlation: must be in (-1/(K-1), 1] for K=3 tasks" in err
    assert not (tmp_path / "o").exists()  # refused before writing anything


def test_cli_bad_label_scale_names_the_option(tmp_path, capsys):
    code = _cli(["--rows", "5", "--tasks", "2", "--correlation", "0", "--out", str(tmp_path),
                 "--label-scales", "1,-2"])
    assert code == 2 and "--label-scales[1]: must be a positive number" in capsys.readouterr().err


def test_cli_refuses_existing_data_unless_overwrite(tmp_path, capsys):
    argv = ["--rows", "5", "--tasks", "2", "--correlation", "0", "--out", str(tmp_path)]
    assert _cli(argv) == 0
    assert _cli(argv) == 2 and "--out: " in capsys.readouterr().err
    assert _cli([*argv, "--overwrite", "--format", "csv"]) == 0


def test_cli_argument_syntax_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        _cli(["--rows", "0", "--tasks", "2", "--correlation", "0", "--out", "x"])
    assert info.value.code == 2 and "--rows" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        _cli(["--rows", "1", "--tasks", "2", "--correlation", "high", "--out", "x"])
    assert info.value.code == 2 and "--correlation" in capsys.readouterr().err
