"""MirroredStrategy over two logical CPUs matches one device on the same global batch.

Logical devices must be configured before TensorFlow initialises, so the
comparison runs in a fresh Python process (this file, run as a script).
"""
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.subprocess  # two logical CPU devices need a fresh process

# (architecture, weighting, combine[, surgery level]): surgery, learned weights and the
# representation level (its Gram matrix summed over replicas) all reduce across replicas
# differently.
CASES = [("shared_bottom", "uniform", "sum"), ("mmoe", "uncertainty", "pcgrad"),
         ("ple", "gradnorm", "cagrad"), ("shared_bottom", "dwa", "mgda_ub"),
         ("cross_stitch", "uniform", "mgda"), ("mmoe", "uniform", "pcgrad", "representation"),
         # loss-dependent and random weightings: every replica must weigh by the
         # global losses and draw the same weights
         ("mmoe", "famo", "sum"), ("shared_bottom", "db_mtl", "pcgrad"),
         ("cross_stitch", "rlw", "sum"),
         # state assigned in the replica context (ONLY_FIRST_REPLICA) from the global G
         ("mmoe", "uniform", "gradvac"), ("shared_bottom", "uniform", "db_mtl")]
STEPS = 5
# float32 sums in a different order across replicas differ by a few ulps per
# step; measured up to 2.3e-7 after 5 steps (parameters of size ~1).
TOLERANCE = 1e-6


def _compare() -> dict:
    from tfx_mtl.models import distribution
    distribution.split_cpu(2)
    import numpy as np
    import tensorflow as tf

    from tfx_mtl import synth
    from tfx_mtl.models import families, synthetic_input
    from tfx_mtl.models.loop import TrainingLoop
    from tfx_mtl.models.trainer_config import TrainerConfig

    config = synth.SynthConfig(rows=256, tasks=3, features=8, seed=0,
                               task_types=("regression", "binary", "regression"))
    spec = synthetic_input.spec(config)
    # Task 3 has no label on a third of the rows: masked means must use global counts.
    arrays = synthetic_input.transformed(synth.sample(config), spec, {"task_3": range(0, 256, 3)})
    results = {}
    for arch, weighting, combine, *level in CASES:
        params, losses, gates = [], [], []
        for strategy in (tf.distribute.get_strategy(), distribution.strategy()):
            trainer_config = TrainerConfig.from_dict({
                "learning_rate": 0.01, "log_every": 100, "weighting": weighting,
                "combine": combine, "surgery_level": level[0] if level else "parameters",
                "architecture": {"name": arch, "hidden_units": [16], "tower_units": [8],
                                 "experts": 2}})
            tf.keras.utils.set_random_seed(3)
            with strategy.scope():
                network = families.build(spec, {}, None, trainer_config.architecture)
            loop = TrainingLoop(network, spec, synthetic_input.label_stats(arrays, spec),
                                trainer_config, strategy)
            initial = [v.numpy() for v in network.model.trainable_variables]
            result = loop.fit(synthetic_input.dataset(arrays, 64), STEPS)
            params.append([v.numpy() for v in network.model.trainable_variables])
            losses.append(result.losses)
            gates.append(result.gates)
            replicas = result.replicas
        results["/".join((arch, weighting, combine, *level))] = {
            "replicas": replicas,
            "max_param_diff": max(float(np.abs(a - b).max()) for a, b in zip(*params)),
            "max_param_change": max(float(np.abs(a - b).max())
                                    for a, b in zip(initial, params[1])),
            "losses": losses,
            # MMoE/PLE: the gates measured on the last step's global batch, both replicas'
            # rows summed (gate_diagnostics), on one device and mirrored.
            "gates": gates}
    results["resume"] = _resume(spec, arrays)
    return results


def _resume(spec, arrays) -> dict:
    """12 steps straight vs 6, a fresh loop from the checkpoint, 6 more: all mirrored."""
    import tempfile

    import numpy as np
    import tensorflow as tf

    from tfx_mtl.models import distribution, families, synthetic_input
    from tfx_mtl.models.loop import TrainingLoop
    from tfx_mtl.models.trainer_config import TrainerConfig

    def loop(directory):
        config = TrainerConfig.from_dict({
            "learning_rate": 0.01, "log_every": 100, "weighting": "dwa", "combine": "pcgrad",
            "checkpoint_every": 6, "weighting_params": {"period": 4},
            "architecture": {"name": "mmoe", "hidden_units": [16], "experts": 2}})
        strategy = distribution.strategy()
        tf.keras.utils.set_random_seed(5)
        with strategy.scope():
            network = families.build(spec, {}, None, config.architecture)
        return TrainingLoop(network, spec, synthetic_input.label_stats(arrays, spec), config,
                            strategy, checkpoint_dir=directory)

    def data():
        return synthetic_input.dataset(arrays, 64, shuffle_seed=4)

    straight = loop(tempfile.mkdtemp())
    straight.fit(data(), 12)
    directory = tempfile.mkdtemp()
    loop(directory).fit(data(), 6)
    resumed = loop(directory)
    result = resumed.fit(data(), 12)
    return {"replicas": result.replicas, "resumed_from": result.resumed_from,
            "max_param_diff": max(float(np.abs(a.numpy() - b.numpy()).max()) for a, b in zip(
                straight.network.model.trainable_variables,
                resumed.network.model.trainable_variables))}


@pytest.fixture(scope="module")
def comparison():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, __file__], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_mirrored_run_resumes_from_its_checkpoint(comparison):
    # Distributed iterators cannot be checkpointed: the resumed run replays the data.
    result = comparison["resume"]
    assert (result["replicas"], result["resumed_from"]) == (2, 6)
    assert result["max_param_diff"] == 0.0


@pytest.mark.parametrize("case", ["/".join(c) for c in CASES])
def test_two_replicas_match_one_device(comparison, case):
    result = comparison[case]
    assert result["replicas"] == 2  # the second run really was mirrored
    assert result["max_param_change"] > 1e-2  # and really trained
    assert result["max_param_diff"] < TOLERANCE, result
    one, two = result["losses"]
    for task in one:
        assert two[task] == pytest.approx(one[task], rel=1e-4, abs=1e-6)
    one, two = result["gates"]
    if case.split("/")[0] in ("mmoe", "ple"):
        assert one["rows"] == two["rows"] == 64 and one["step"] == two["step"] == STEPS
        assert two["load"] == pytest.approx(one["load"], abs=1e-5)
        for name, gate in one["gates"].items():
            assert two["gates"][name]["mean"] == pytest.approx(gate["mean"], abs=1e-5)
    else:
        assert one is two is None


if __name__ == "__main__":
    print(json.dumps(_compare()))
