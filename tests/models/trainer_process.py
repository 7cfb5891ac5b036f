"""One process of a multi-worker test; ``TF_CONFIG`` in the environment places it in a cluster.

``python trainer_process.py run_fn JOB.json``: ``trainer.run_fn`` over real TFX
artifacts, as the TFX Trainer calls it. The job names the Examples and
TransformGraph artifact directories, the run and serving directories, the steps
and the ``custom_config``; ``FnArgs`` and its data accessor are built by TFX's
own ``get_common_fn_args`` from the artifacts.

``python trainer_process.py barrier DELAY OUT.json``: waits DELAY seconds, then
``distribution.barrier``; writes when it arrived at and returned from it.
"""
import json
import sys
import time


def run_fn(job_path: str) -> None:
    with open(job_path) as f:
        job = json.load(f)
    # Nothing here may run a TensorFlow op before run_fn picks its strategy.
    from absl import logging
    from tfx.components.trainer import fn_args_utils
    from tfx.types import artifact_utils, standard_artifacts
    from tfx.types import standard_component_specs as keys

    from tfx_mtl.models import trainer

    logging.set_verbosity(logging.INFO)
    examples = standard_artifacts.Examples()
    examples.uri = job["examples"]
    examples.split_names = artifact_utils.encode_split_names(["train", "validation"])
    graph = standard_artifacts.TransformGraph()
    graph.uri = job["transform_graph"]
    fn_args = fn_args_utils.get_common_fn_args(
        {keys.EXAMPLES_KEY: [examples], keys.TRANSFORM_GRAPH_KEY: [graph]},
        {keys.TRAIN_ARGS_KEY: json.dumps({"num_steps": job["train_steps"], "splits": ["train"]}),
         keys.EVAL_ARGS_KEY: json.dumps({"num_steps": 1, "splits": ["validation"]}),
         keys.CUSTOM_CONFIG_KEY: json.dumps(job["custom_config"])})
    # What TFX's GenericExecutor._GetFnArgs adds to the common arguments.
    fn_args.transform_output = fn_args.transform_graph_path
    fn_args.serving_model_dir = job["serving_model_dir"]
    fn_args.model_run_dir = job["model_run_dir"]
    trainer.run_fn(fn_args)


def barrier(delay: str, out_path: str) -> None:
    from tfx_mtl.models import distribution

    strategy = distribution.strategy()
    time.sleep(float(delay))
    arrived = time.time()
    distribution.barrier(strategy)
    with open(out_path, "w") as f:
        json.dump({"strategy": distribution.describe(strategy), "arrived": arrived,
                   "returned": time.time()}, f)


if __name__ == "__main__":
    {"run_fn": run_fn, "barrier": barrier}[sys.argv[1]](*sys.argv[2:])
