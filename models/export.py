"""Exports the trained model as one SavedModel with per-task signatures.

Every signature takes serialized ``tf.Example``s of raw features (input
``examples``) and runs the Transform graph inside the model:
  ``serving_default``     every task's outputs, keys ``<task>_<output>``
  ``<task>``              that task's outputs, bare names (see naming)
  ``transform_features``  the transformed features, labels and masks (for TFMA)
  ``<task>__evaluation``  the task's scored output, alone (for TFMA)
  ``<task>__evaluation_labelled``  that output under the task's name, plus the
                          task's label and mask (``<task>__label``, ``<task>__mask``):
                          the Evaluators read all three from one pass
Only the spec's feature columns are parsed for prediction, so extra columns in
an example (labels, anything else) are ignored.
"""
from __future__ import annotations

from typing import Mapping

import tensorflow as tf
import tensorflow_transform as tft

from tfx_mtl import naming
from tfx_mtl.models import heads
from tfx_mtl.task_spec import TaskSpec

_EXAMPLES_SPEC = tf.TensorSpec(shape=[None], dtype=tf.string, name=naming.EXAMPLES_INPUT)


def export(model: tf.keras.Model, spec: TaskSpec, tf_transform_output: tft.TFTransformOutput,
           label_stats: Mapping[str, tuple[float, float]], export_dir: str) -> None:
    """Writes the SavedModel; ``label_stats`` holds (mean, std) per regression task."""
    raw_spec = tf_transform_output.raw_feature_spec()
    missing = [f for f in spec.feature_names if f not in raw_spec]
    if missing:
        raise ValueError(f"features {missing} of the spec are not in the Transform's raw schema")
    serving_spec = {name: raw_spec[name] for name in spec.feature_names}
    feature_keys = list(spec.feature_keys)  # raw columns in, their safe keys out
    class_names = {
        task.name: tf.constant(tf_transform_output.vocabulary_by_name(
            naming.label_vocab_name(task.name)))
        for task in spec.tasks if task.type == "multiclass"}

    # Attached to the model so the SavedModel tracks the Transform graph's resources.
    model.tft_layer = tf_transform_output.transform_features_layer()

    def predict(serialized: tf.Tensor) -> dict[str, dict[str, tf.Tensor]]:
        return predict_transformed(model.tft_layer(tf.io.parse_example(serialized, serving_spec)))

    def predict_transformed(transformed: Mapping[str, tf.Tensor]
                            ) -> dict[str, dict[str, tf.Tensor]]:
        raw_out = model({k: transformed[k] for k in feature_keys}, training=False)
        result = {}
        for task in spec.tasks:
            mean, std = label_stats.get(task.name, (0.0, 1.0))
            result[task.name] = heads.outputs(task, raw_out[task.name], mean, std,
                                              class_names.get(task.name))
        return result

    @tf.function(input_signature=[_EXAMPLES_SPEC])
    def serve_all(examples):
        return {naming.output_key(task, name): value
                for task, outs in predict(examples).items() for name, value in outs.items()}

    def task_signature(task_name: str):
        @tf.function(input_signature=[_EXAMPLES_SPEC])
        def serve_task(examples):
            return predict(examples)[task_name]
        return serve_task

    def evaluation_signature(task):
        @tf.function(input_signature=[_EXAMPLES_SPEC])
        def evaluation(examples):
            return {task.name: predict(examples)[task.name][naming.SCORED_OUTPUT[task.type]]}
        return evaluation

    def labelled_evaluation_signature(task):
        # Every raw column is parsed (the label's too): the one Transform pass an
        # Evaluator needs per model, instead of transform_features then evaluation.
        @tf.function(input_signature=[_EXAMPLES_SPEC])
        def labelled_evaluation(examples):
            transformed = model.tft_layer(tf.io.parse_example(examples, raw_spec))
            score = predict_transformed(transformed)[task.name][naming.SCORED_OUTPUT[task.type]]
            return {task.name: score,
                    **{key: transformed[key]
                       for key in (naming.label_key(task.name), naming.mask_key(task.name))}}
        return labelled_evaluation

    @tf.function(input_signature=[_EXAMPLES_SPEC])
    def transform_features(examples):
        return model.tft_layer(tf.io.parse_example(examples, raw_spec))

    signatures = {naming.SERVING_DEFAULT: serve_all,
                  naming.TRANSFORM_FEATURES: transform_features}
    for task in spec.tasks:
        signatures[task.name] = task_signature(task.name)
        signatures[naming.evaluation_signature(task.name)] = evaluation_signature(task)
        signatures[naming.labelled_evaluation_signature(task.name)] = (
            labelled_evaluation_signature(task))
    tf.saved_model.save(model, export_dir, signatures=signatures)
