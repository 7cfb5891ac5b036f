"""Training loops on synthetic data, shared by the loop and selection tests: small
networks, Transform-like arrays from ``tfx_mtl.synth``."""
import tensorflow as tf

from tfx_mtl import synth
from tfx_mtl.models import families, synthetic_input
from tfx_mtl.models.loop import TrainingLoop
from tfx_mtl.models.trainer_config import TrainerConfig

SMALL = dict(hidden_units=(16,), tower_units=(8,), experts=3, task_experts=1, levels=1)


def data(tasks=2, rows=512, correlation=0.5, seed=0, label_scales=None, task_types=None,
          missing=None):
    config = synth.SynthConfig(rows=rows, tasks=tasks, correlation=correlation, features=8,
                               seed=seed, label_scales=label_scales, task_types=task_types)
    spec = synthetic_input.spec(config)
    arrays = synthetic_input.transformed(synth.sample(config), spec, missing)
    return spec, arrays


def loop(spec, arrays, tmp_path=None, strategy=None, **options):
    arch = options.pop("architecture", {})
    max_steps = options.pop("max_steps", None)
    class_weights = options.pop("class_weights", None)
    config = TrainerConfig.from_dict({"learning_rate": 0.01, "log_every": 5, "seed": 1,
                                      **options, "architecture": {**SMALL, **arch}})
    strategy = strategy or tf.distribute.get_strategy()
    tf.keras.utils.set_random_seed(1)
    with strategy.scope():
        network = families.build(spec, {}, None, config.architecture)
    return TrainingLoop(network, spec, synthetic_input.label_stats(arrays, spec), config, strategy,
                        checkpoint_dir=str(tmp_path / "ckpt") if tmp_path else None,
                        log_dir=str(tmp_path / "logs") if tmp_path else None,
                        max_steps=max_steps, class_weights=class_weights)


def params(loop):
    return [v.numpy().copy() for v in loop.network.model.trainable_variables]


