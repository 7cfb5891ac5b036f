"""``tfx-mtl compile``: the pipeline as a KFP v2 spec for Kubeflow Pipelines (or Vertex AI).

The model and optimiser options are ``tfx-mtl run``'s; the data location, train
steps, architecture, weighting and gradient combination become run-time
parameters whose defaults they set.
"""
from __future__ import annotations

import argparse

from tfx_mtl import data, run_parameters
from tfx_mtl.cli import options
from tfx_mtl.runners import kubeflow as compiler


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "compile", help="compile the pipeline for Kubeflow Pipelines (KFP v2), no cluster needed",
        description="Compiles the DAG that `tfx-mtl run` runs with TFX's KubeflowV2DagRunner. "
                    f"Run-time parameters (set per run with `tfx-mtl submit --param`): "
                    f"{', '.join(run_parameters.PARAMETERS)}.")
    p.add_argument("--image", required=True,
                   help="the pipeline image every component runs (built from kubeflow/Dockerfile)")
    p.add_argument("--output", required=True, metavar="FILE",
                   help="pipeline.yaml (PipelineSpec, for Kubeflow Pipelines) or pipeline.json "
                        "(PipelineJob, for Vertex AI)")
    p.add_argument("--pipeline-root", required=True, metavar="URI",
                   help="where artifacts go, reachable from every pod (gs://bucket/path)")
    options.add_spec(p)
    p.add_argument("--data-root", default=compiler.IMAGE_DATA_ROOT, metavar="URI",
                   help="default of the data_root parameter: a directory of data files "
                        "(default: the taxi sample inside the image)")
    p.add_argument("--data-format", choices=data.FORMATS, default="csv",
                   help="the format of the files under data_root, fixed in the spec: csv "
                        "(CsvExampleGen reads *.csv) or tfrecord (ImportExampleGen reads "
                        "*.tfrecord*, tf.Examples, gzip when .gz) (default: csv)")
    p.add_argument("--data-layout", choices=data.LAYOUTS, default=data.UNSPLIT,
                   help="how the data under data_root is laid out, fixed in the spec: unsplit "
                        "(its files, hashed into train/validation/test by the spec's "
                        "data.splits) or split-dirs (data_root holds train/, validation/ and "
                        "test/, used as given) (default: unsplit)")
    p.add_argument("--serving-model-dir", metavar="URI",
                   help="where Pusher writes blessed models (default: "
                        "<pipeline-root>/serving_model/<pipeline name>)")
    options.add_steps_and_batch(p, "default of the train_steps parameter")
    p.add_argument("--no-cache", action="store_true", help="disable KFP's step caching")
    options.add_training_options(p)
    p.add_argument("--seeds", type=options.positive_int, metavar="N",
                   help="train the multi-task model and every baseline N times, fixed in "
                        "the spec (default: the task spec's evaluation.seeds)")

    scale = p.add_argument_group("scale (compiled into the spec when set)")
    scale.add_argument("--beam-arg", action="append", default=[], metavar="ARG",
                       help="a Beam option for ExampleGen, StatisticsGen, Transform and the "
                            "Evaluators, e.g. --beam-arg=--runner=DataflowRunner (repeat)")
    scale.add_argument("--trainer-gpus", type=options.non_negative_int, default=0,
                       help="GPUs per Trainer (several: MirroredStrategy)")
    scale.add_argument("--gpu-type", help="accelerator: nvidia.com/gpu on Kubeflow (default), "
                                          "e.g. NVIDIA_TESLA_T4 with --trainer-workers")
    scale.add_argument("--trainer-cpu", type=options.positive_number, help="CPU limit (cores)")
    scale.add_argument("--trainer-memory-gb", type=options.positive_number,
                       help="memory limit (GB)")
    scale.add_argument("--trainer-workers", type=options.positive_int, default=1,
                       help="machines per Trainer: > 1 trains as a Vertex AI custom job under "
                            "MultiWorkerMirroredStrategy")
    scale.add_argument("--machine-type", default="n1-standard-8",
                       help="with --trainer-workers: the Vertex machine type (default n1-standard-8)")
    scale.add_argument("--vertex-project", help="with --trainer-workers: the GCP project")
    scale.add_argument("--vertex-region", help="with --trainer-workers: the Vertex AI region")
    p.set_defaults(func=run)


def options_from(args: argparse.Namespace) -> compiler.CompileOptions:
    if args.cpu_replicas:
        raise compiler.CompileError("--cpu-replicas", "splits a local CPU; on Kubeflow use "
                                                      "--trainer-gpus or --trainer-workers")
    return compiler.CompileOptions(
        image=args.image, pipeline_root=args.pipeline_root, spec_path=args.spec,
        data_root=args.data_root, data_format=args.data_format, data_layout=args.data_layout,
        serving_model_dir=args.serving_model_dir,
        train_steps=options.train_steps(args), eval_steps=args.eval_steps,
        trainer_options=options.trainer_options(args), beam_args=tuple(args.beam_arg),
        trainer=compiler.TrainerScale(
            gpus=args.trainer_gpus, gpu_type=args.gpu_type, cpu=args.trainer_cpu,
            memory_gb=args.trainer_memory_gb, workers=args.trainer_workers,
            machine_type=args.machine_type, vertex_project=args.vertex_project,
            vertex_region=args.vertex_region),
        enable_cache=not args.no_cache, seeds=args.seeds)


def run(args: argparse.Namespace) -> int:
    compile_options = options_from(args)
    job = compiler.compile_pipeline(compile_options, args.output)
    spec = job["pipelineSpec"]
    print(f"compiled {spec['pipelineInfo']['name']!r} ({len(spec['root']['dag']['tasks'])} tasks, "
          f"image {compile_options.image}) to {args.output}")
    for name, default in sorted(compiler.parameter_defaults(job).items()):
        print(f"  --param {name}={default}")
    if args.train_epochs is not None:
        print(f"  budget: {args.train_epochs:g} epochs over the train split, worked out in "
              "steps by each Trainer when it runs (the train_steps parameter is not used)")
    return 0
