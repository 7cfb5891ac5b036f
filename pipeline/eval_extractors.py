"""The Evaluators' extractors: one pass of each model over the examples, not two.

TFMA's default extractors run each model twice per example: its preprocessing
signature (``transform_features``, for the label and example weight), then the
signature it scores (``<task>__evaluation``), which parses and transforms the
examples again. Models exported by ``models/export.py`` also have
``<task>__evaluation_labelled``: the same score plus the task's label and mask from
one Transform pass. When every model of the Evaluator has it, the extractors here run
that signature alone (TFMA's TransformedFeaturesExtractor) and read the label, the
weight and the prediction from its outputs (TFMA's Labels, ExampleWeights and
MaterializedPredictions extractors, by key); the metrics are then computed from the
same values as before, and the EvalConfig (and so TFX's cache key) does not change.
A model without it (a baseline reused from an older export) gets TFMA's default
model passes. Every Evaluator's unbatching step is TFMA's, with each batch's examples
freed when done (:func:`unbatch`; TFMA's holds them until a full garbage collection).
TFX's Evaluator calls :func:`custom_extractors` (``module_path``).
TFX's cache key holds the module's path, not its code; that is safe here, as this
module changes how the values are computed, never which.
"""
from __future__ import annotations

from typing import Any, Mapping

import apache_beam as beam
from tensorflow_model_analysis import constants
from tensorflow_model_analysis.api import model_eval_lib
from tensorflow_model_analysis.extractors import (example_weights_extractor, extractor,
                                                  labels_extractor,
                                                  materialized_predictions_extractor,
                                                  predictions_extractor,
                                                  transformed_features_extractor,
                                                  unbatch_extractor)
from tensorflow_model_analysis.proto import config_pb2
from tensorflow_model_analysis.utils import util

from tfx_mtl import naming


def unbatch(batched: Mapping[str, Any]) -> list:
    """TFMA's unbatching of one batch of extracts into per-example extracts, with the
    examples released as soon as the pipeline is done with them.

    TFMA's ``util.split_extracts`` builds its result inside a reference cycle (its
    recursive ``visit`` closure holds ``add_to_results``, whose cell holds the result
    list), so every batch's per-example extracts (all raw and transformed features)
    outlive it until Python's next full garbage collection, which comes rarely in a
    process holding a million long-lived objects: one Evaluator's memory grew ~7 KB
    per eval example (1.9 GiB at 20k, 2.4 GiB at 100k eval rows). Emptying that list once
    its items are copied out breaks the hold. A batch with legacy list-valued extracts
    goes through TFMA's own function unchanged."""
    values = {k: v for k, v in batched.items() if k != constants.ARROW_RECORD_BATCH_KEY}
    if any(isinstance(v, list) for v in values.values()):
        return list(unbatch_extractor._extract_unbatched_inputs(batched))  # noqa: SLF001
    held = util.split_extracts(values)
    examples = list(held)
    held.clear()
    return examples


def unbatch_extractor_releasing_examples() -> extractor.Extractor:
    """TFMA's UnbatchExtractor (same stage name, same outputs) through :func:`unbatch`."""
    return extractor.Extractor(
        stage_name=unbatch_extractor.UNBATCH_EXTRACTOR_STAGE_NAME,
        ptransform=beam.FlatMap(unbatch).with_input_types(Any).with_output_types(Any))


def one_pass_config(eval_config: config_pb2.EvalConfig) -> config_pb2.EvalConfig:
    """A copy of ``eval_config`` whose models read everything from the labelled signature:
    it is each model's one preprocessing function, and its outputs hold the prediction
    (under the task's name), the label and the weight (the EvalConfig's keys)."""
    config = config_pb2.EvalConfig()
    config.CopyFrom(eval_config)
    for spec in config.model_specs:
        task = naming.evaluation_task(spec.signature_name)
        del spec.preprocessing_function_names[:]
        spec.preprocessing_function_names.append(naming.labelled_evaluation_signature(task))
        spec.prediction_key = task
    return config


def _signatures(model_path: str) -> set[str]:
    """The signature names of a SavedModel, read from its proto (no model is loaded)."""
    from tensorflow.python.saved_model import loader_impl
    saved_model = loader_impl.parse_saved_model(model_path)
    return {name for graph in saved_model.meta_graphs for name in graph.signature_def}


def _has_labelled_signature(eval_config: config_pb2.EvalConfig, models) -> bool:
    paths = {m.model_name: m.model_path for m in models}
    return all(naming.labelled_evaluation_signature(naming.evaluation_task(spec.signature_name))
               in _signatures(paths[spec.name]) for spec in eval_config.model_specs)


def custom_extractors(eval_shared_model, eval_config: config_pb2.EvalConfig,
                      tensor_adapter_config=None):
    """TFMA's default extractors with the unbatching step replaced by :func:`unbatch`
    and, when every model has the labelled signature, the model passes by one per model.
    A TFMA whose default extractors lack a stage replaced here keeps that stage's own."""
    models = eval_shared_model if isinstance(eval_shared_model, list) else [eval_shared_model]
    defaults = model_eval_lib.default_extractors(
        eval_shared_model=eval_shared_model, eval_config=eval_config,
        tensor_adapter_config=tensor_adapter_config)
    stages = {e.stage_name for e in defaults}
    # Keyed by the stage each replaces: the default extractors' own stage names.
    replacements = {}
    if stages >= {unbatch_extractor.UNBATCH_EXTRACTOR_STAGE_NAME}:
        replacements[unbatch_extractor.UNBATCH_EXTRACTOR_STAGE_NAME] = (
            unbatch_extractor_releasing_examples())
    if _has_labelled_signature(eval_config, models):
        one_pass = _one_pass_extractors(eval_shared_model, eval_config)
        if stages >= set(one_pass):
            replacements.update(one_pass)
    return [replacements.get(e.stage_name, e) for e in defaults]


def _one_pass_extractors(eval_shared_model, eval_config: config_pb2.EvalConfig) -> dict:
    """The extractors that run each model once, by the default stage each replaces."""
    one_pass = one_pass_config(eval_config)
    extractors = {e.stage_name: e for e in (
        transformed_features_extractor.TransformedFeaturesExtractor(
            eval_config=one_pass, eval_shared_model=eval_shared_model),
        labels_extractor.LabelsExtractor(eval_config=one_pass),
        example_weights_extractor.ExampleWeightsExtractor(eval_config=one_pass))}
    extractors[predictions_extractor.PREDICTIONS_EXTRACTOR_STAGE_NAME] = (
        materialized_predictions_extractor.MaterializedPredictionsExtractor(
            eval_config=one_pass))
    return extractors
