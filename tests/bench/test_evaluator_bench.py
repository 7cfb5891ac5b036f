"""The Evaluator bench's arithmetic and its workdirs (the runs themselves: the e2e test of
tests/pipeline/test_eval_extractors.py drives prepare/evaluate/results on real models)."""
import os

from tfx_mtl.bench import evaluator_bench


def test_per_example_cost_is_the_slope_between_the_smallest_and_largest_size():
    runs = [{"rows": 1000, "mode": "one-pass", "cpu_s": 10.0, "peak_rss_mib": 1000.0},
            {"rows": 5000, "mode": "one-pass", "cpu_s": 14.0, "peak_rss_mib": 1100.0},
            {"rows": 3000, "mode": "one-pass", "cpu_s": 99.0, "peak_rss_mib": 9999.0},
            {"rows": 1000, "mode": "two-pass", "cpu_s": 12.0, "peak_rss_mib": 1000.0},
            {"rows": 5000, "mode": "two-pass", "cpu_s": 20.0, "peak_rss_mib": 1000.0}]
    # (14 - 10) s / 4000 rows = 1 ms; 100 MiB * 1024 / 4000 rows = 25.6 KB
    assert evaluator_bench.per_example(runs) == {
        "one-pass": {"cpu_ms_per_example": 1.0, "rss_kb_per_example": 25.6},
        "two-pass": {"cpu_ms_per_example": 2.0, "rss_kb_per_example": 0.0}}
    assert evaluator_bench.per_example(runs[:1]) == {}  # one size: no slope


def test_later_sizes_score_the_first_size_s_models_on_their_own_rows(tmp_path):
    models = tmp_path / "rows10"
    for name in ("candidate", "baseline_task_1", "transform", "examples"):
        (models / name).mkdir(parents=True)
    (models / "spec.json").write_text("{}")
    workdir = evaluator_bench._workdir(str(tmp_path), 7, features=3, tasks=2,
                                       models=str(models))
    assert sorted(os.listdir(workdir)) == ["baseline_task_1", "candidate", "examples",
                                           "spec.json", "transform"]
    assert os.path.realpath(os.path.join(workdir, "candidate")) == str(models / "candidate")
    assert not os.path.islink(os.path.join(workdir, "examples"))
    (split,) = os.listdir(os.path.join(workdir, "examples"))
    assert split == "Split-test"
    import tensorflow as tf
    records = tf.data.TFRecordDataset(
        os.path.join(workdir, "examples", split, "data_tfrecord-00000-of-00001.gz"), "GZIP")
    examples = [tf.train.Example.FromString(r.numpy()) for r in records]
    assert len(examples) == 7
    assert sorted(examples[0].features.feature) == ["task_1", "task_2", "x_0", "x_1", "x_2"]
    # task_1 binary (an int64 0/1), task_2 regression (a float)
    assert examples[0].features.feature["task_1"].int64_list.value[0] in (0, 1)
    assert len(examples[0].features.feature["task_2"].float_list.value) == 1
    # a workdir that exists is kept as it is
    assert evaluator_bench._workdir(str(tmp_path), 7, 3, 2, models=None) == workdir

