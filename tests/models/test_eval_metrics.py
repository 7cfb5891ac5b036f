"""The loop's in-training metrics for a multiclass task, on known probabilities."""
import numpy as np
import pytest
import tensorflow as tf

from tfx_mtl import comparison, naming, task_spec
from tfx_mtl.models import eval_metrics

SPEC = task_spec.parse({"features": ["x"], "tasks": [
    {"name": "kind", "type": "multiclass", "label": "species", "metrics": [
        "accuracy", "log_loss", {"name": "top_k_accuracy", "k": 2}, "auc_micro", "auc_macro",
        {"name": "recall", "class": "Adelie"}]}]})
P = np.array([[0.7, 0.2, 0.1], [0.3, 0.6, 0.1], [0.2, 0.3, 0.5], [0.45, 0.35, 0.2],
              [0.05, 0.9, 0.05]], dtype=np.float32)
LABEL = np.array([0, 1, 2, 1, 0])
MASK = np.array([1, 1, 1, 1, 0], dtype=np.float32)  # the last example has no label


class Scripted(tf.keras.Model):
    """Logits whose softmax is the feature's probabilities."""

    def call(self, inputs, training=False):
        return {"kind": tf.math.log(inputs[naming.feature_key("x")])}


def test_every_multiclass_metric_but_per_class_ones_is_computed_in_the_loop():
    batch = {naming.feature_key("x"): tf.constant(P), naming.label_key("kind"): tf.constant(LABEL),
             naming.mask_key("kind"): tf.constant(MASK)}
    values = eval_metrics.Evaluator(Scripted(), SPEC, {})([batch])["kind"]
    assert set(values) == {"accuracy", "log_loss", "top_k_accuracy@2", "auc_micro", "auc_macro",
                           eval_metrics.LOSS}
    assert eval_metrics.metric_names(SPEC.task("kind")) == (
        "accuracy", "log_loss", "top_k_accuracy@2", "auc_micro", "auc_macro")
    # the 4 labelled examples: 3 argmax matches; label among the top 2 for all but example 3
    assert values["accuracy"] == pytest.approx(3 / 4)
    assert values["top_k_accuracy@2"] == pytest.approx(4 / 4)
    assert values["log_loss"] == pytest.approx(
        -np.mean(np.log([0.7, 0.6, 0.5, 0.35])), rel=1e-5)
    # distinct probabilities: Keras' 1,000 thresholds order every pair as the numpy AUCs do
    for key in ("auc_micro", "auc_macro"):
        assert values[key] == pytest.approx(
            comparison.metric_value("multiclass", key, LABEL, P, MASK), abs=1e-3), key
    assert values["auc_micro"] == pytest.approx(31 / 32, abs=1e-3)
