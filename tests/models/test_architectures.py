"""The architecture family: shapes, who is connected to which task, the representation
boundary MGDA-UB relies on, the mixing arithmetic, config errors and SavedModel export."""
import dataclasses
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfx_mtl import naming, task_spec
from tfx_mtl.models import architecture, blocks, cross_stitch, families, ownership
from tfx_mtl.models.architecture import ArchitectureConfig, ArchitectureError

SPEC = task_spec.parse({
    "name": "arch",
    "features": [{"name": "x", "kind": "numeric"},
                 {"name": "c", "kind": "categorical", "embedding_dim": 2},
                 {"name": "q", "kind": "bucketized", "buckets": 3, "embedding_dim": 2}],
    "tasks": [{"name": "b", "type": "binary", "label": "y > 0"},
              {"name": "r", "type": "regression", "label": "z", "role": "auxiliary"},
              {"name": "m", "type": "multiclass", "label": "k", "role": "auxiliary"}],
})
CARDINALITIES = {"c": 5, "q": 3}
NUM_CLASSES = {"m": 3}
WIDTHS = {"b": 1, "r": 1, "m": 3}
TINY = ArchitectureConfig(hidden_units=(4, 3), tower_units=(2,), experts=2, task_experts=1)
CONFIGS = {
    "shared_bottom": dataclasses.replace(TINY, name="shared_bottom"),
    "mmoe": dataclasses.replace(TINY, name="mmoe"),
    "ple_cgc": dataclasses.replace(TINY, name="ple"),
    "ple_2_levels": dataclasses.replace(TINY, name="ple", levels=2, task_experts=2),
    "cross_stitch": dataclasses.replace(TINY, name="cross_stitch"),
}
_NETWORKS = {}


def _inputs(rows=8, seed=0):
    rng = np.random.default_rng(seed)
    return {naming.feature_key("x"): tf.constant(rng.normal(size=rows), tf.float32),
            naming.feature_key("c"): tf.constant(rng.integers(0, 5, rows), tf.int64),
            naming.feature_key("q"): tf.constant(rng.integers(0, 3, rows), tf.int64)}


def _network(key):
    if key not in _NETWORKS:
        tf.keras.utils.set_random_seed(1)
        _NETWORKS[key] = families.build(SPEC, CARDINALITIES, NUM_CLASSES, CONFIGS[key])
    return _NETWORKS[key]


def _ids(variables):
    return [id(v) for v in variables]


def _connected(network):
    """task -> ids of the trainable variables with a (non-None) gradient of its output."""
    inputs = _inputs()
    with tf.GradientTape(persistent=True) as tape:
        out = network.model(inputs)
        sums = {task: tf.reduce_sum(out[task]) for task in SPEC.task_names}
    variables = network.model.trainable_variables
    result = {}
    for task in SPEC.task_names:
        grads = tape.gradient(sums[task], variables)
        result[task] = {id(v) for v, g in zip(variables, grads) if g is not None}
    return result


def _dense(value):
    return tf.convert_to_tensor(value).numpy()  # embeddings get IndexedSlices


@pytest.mark.parametrize("key", CONFIGS)
def test_outputs_per_task_and_a_representation_model_on_the_same_variables(key):
    network = _network(key)
    inputs = _inputs()
    out = network.model(inputs)
    assert list(out) == list(SPEC.task_names)  # spec order
    for task, raw in out.items():
        assert raw.shape == (8, WIDTHS[task]) and np.all(np.isfinite(raw.numpy()))
    both = network.representation_model(inputs)
    for task in SPEC.task_names:
        np.testing.assert_allclose(both["outputs"][task].numpy(), out[task].numpy(), rtol=1e-6)
    assert all(r.shape[0] == 8 for r in both["representation"])
    shared = _ids(network.representation_model.trainable_variables)
    assert len(shared) == len(network.model.trainable_variables)
    assert set(shared) == set(_ids(network.model.trainable_variables))


def _partition(network):
    return ownership.partition(network.model, network.last_shared_variables(), SPEC.task_names)


def _layer(network, name):
    return _ids(network.model.get_layer(name).trainable_variables)


@pytest.mark.parametrize("key", CONFIGS)
def test_each_task_owns_its_tower_and_head_and_the_last_shared_layers_reach_all(key):
    network = _network(key)
    connected = _connected(network)
    partition = _partition(network)
    expected = {"shared_bottom": ["{t}_tower_0", "{t}_head"],
                "mmoe": ["{t}_gate", "{t}_tower_0", "{t}_head"],
                "ple_cgc": ["{t}_level_0_gate", "{t}_level_0_expert_0_1", "{t}_head"],
                "ple_2_levels": ["{t}_level_1_gate", "{t}_level_1_expert_0_1",
                                 "{t}_level_1_expert_1_1", "{t}_tower_0", "{t}_head"],
                "cross_stitch": ["{t}_tower_0", "{t}_head"]}[key]
    for task in SPEC.task_names:
        owned = set(_ids(partition.owned[task]))
        for name in expected:
            assert set(_layer(network, name.format(t=task))) <= owned, (name, task)
        for other in SPEC.task_names:  # what a task owns reaches that task alone
            assert (owned <= connected[other]) if other == task else not owned & connected[other]
    assert network.last_shared_layers
    last_shared = _ids(network.last_shared_variables())
    assert last_shared and all(set(last_shared) <= connected[t] for t in SPEC.task_names)
    assert set(last_shared) <= set(_ids(partition.shared))


@pytest.mark.parametrize("key", ["shared_bottom", "mmoe", "cross_stitch", "ple_cgc"])
def test_every_shared_variable_reaches_every_task(key):
    network = _network(key)
    connected = _connected(network)
    shared = _ids(_partition(network).shared)
    assert shared and all(set(shared) <= connected[t] for t in SPEC.task_names)


def test_ple_earlier_levels_are_shared_except_the_task_gate_before_the_boundary():
    network = _network("ple_2_levels")
    connected = _connected(network)
    partition = _partition(network)
    # b's level-0 experts feed the level-0 shared gate, hence every task.
    b_expert = _layer(network, "b_level_0_expert_1_0")
    assert all(set(b_expert) <= connected[t] for t in SPEC.task_names)
    assert set(b_expert) <= set(_ids(partition.shared))
    # b's level-0 gate only makes b's level-1 input: upstream of the boundary, yet b's alone.
    b_gate = set(_layer(network, "b_level_0_gate"))
    assert b_gate <= connected["b"] and not b_gate & (connected["r"] | connected["m"])
    assert b_gate <= set(_ids(partition.owned["b"]))


def test_variables_split_into_shared_and_one_task_each():
    for key in CONFIGS:
        network = _network(key)
        partition = _partition(network)
        owners = [_ids(partition.shared)] + [_ids(partition.owned[t]) for t in SPEC.task_names]
        flat = [i for ids in owners for i in ids]
        assert sorted(flat) == sorted(_ids(network.model.trainable_variables)), key


def _chain_and_direct(network, task, representation=None):
    """(d out_task / d shared via the representation's VJP, the direct gradient)."""
    inputs = _inputs()
    weights = tf.constant(np.random.default_rng(3).normal(size=(8, WIDTHS[task])), tf.float32)
    shared = list(_partition(network).shared)
    with tf.GradientTape(persistent=True) as tape:
        both = network.representation_model(inputs)
        scalar = tf.reduce_sum(both["outputs"][task] * weights)
    rep = both["representation"] if representation is None else representation(both)
    cotangents = [tf.zeros_like(r) if g is None else g for r, g in
                  zip(rep, tape.gradient(scalar, rep))]
    chain = tape.gradient(rep, shared, output_gradients=cotangents)
    direct = tape.gradient(scalar, shared)
    zeros = lambda gs: [np.zeros(v.shape) if g is None else _dense(g) for v, g in zip(shared, gs)]
    return zeros(chain), zeros(direct), direct


@pytest.mark.parametrize("key", CONFIGS)
def test_shared_gradients_factor_through_the_representation(key):
    network = _network(key)
    for task in SPEC.task_names:
        chain, direct, raw_direct = _chain_and_direct(network, task)
        assert sum(g is not None for g in raw_direct) > 0
        for v, c, d in zip(_partition(network).shared, chain, direct):
            np.testing.assert_allclose(c, d, rtol=1e-4, atol=1e-6, err_msg=f"{task}: {v.name}")


def test_mmoe_expert_outputs_alone_are_no_boundary():
    # The gates read the (embedded) feature vector, so the expert outputs miss the
    # gate path into the embeddings: why the gate input belongs to the representation.
    network = _network("mmoe")
    chain, direct, _ = _chain_and_direct(network, "b", lambda both: both["representation"][:-1])
    shared = _partition(network).shared
    embedding = [i for i, v in enumerate(shared) if "embedding" in v.name]
    assert embedding and any(not np.allclose(chain[i], direct[i]) for i in embedding)


def test_mmoe_gates_are_softmaxes_over_the_configured_experts():
    network = _network("mmoe")
    model = network.model
    experts = {layer.name.rsplit("_", 1)[0] for layer in model.layers
               if layer.name.startswith("expert_") and not layer.name.endswith("dropout")}
    assert experts == {"expert_0", "expert_1"}
    gates = tf.keras.Model(model.inputs, [model.get_layer(f"{t}_gate").output
                                          for t in SPEC.task_names])
    for gate in gates(_inputs()):
        assert gate.shape == (8, 2)
        np.testing.assert_allclose(tf.reduce_sum(gate, axis=1).numpy(), np.ones(8), rtol=1e-6)
    assert len(network.representation_model(_inputs())["representation"]) == 2 + 1


def test_ple_expert_and_gate_counts_per_level():
    config = CONFIGS["ple_2_levels"]
    model = _network("ple_2_levels").model
    names = {layer.name for layer in model.layers}
    for level in range(2):
        shared = {n for n in names if n.startswith(f"level_{level}_shared_expert_") and n.endswith("_0")}
        assert len(shared) == config.experts
        for task in SPEC.task_names:
            own = {n for n in names if n.startswith(f"{task}_level_{level}_expert_") and n.endswith("_0")}
            assert len(own) == config.task_experts
            gate = model.get_layer(f"{task}_level_{level}_gate")
            assert gate.units == config.task_experts + config.experts  # own + shared
    # Only the levels before the last mix a shared input for the next level.
    assert model.get_layer("level_0_shared_gate").units == 3 * config.task_experts + config.experts
    assert "level_1_shared_gate" not in names
    rep = _network("ple_2_levels").representation_model(_inputs())["representation"]
    assert len(rep) == len(SPEC.tasks) + config.experts
    assert len(_network("ple_cgc").representation_model(_inputs())["representation"]) == 1 + 2


def test_cross_stitch_arithmetic_and_initial_matrix():
    # K=2 starts at [[0.9, 0.1], [0.1, 0.9]]:
    # 0.9*[1, 2] + 0.1*[3, 4] = [1.2, 2.2];  0.1*[1, 2] + 0.9*[3, 4] = [2.8, 3.8]
    unit = cross_stitch.CrossStitch()
    a, b = unit([tf.constant([[1.0, 2.0]]), tf.constant([[3.0, 4.0]])])
    np.testing.assert_allclose(a.numpy(), [[1.2, 2.2]], rtol=1e-6)
    np.testing.assert_allclose(b.numpy(), [[2.8, 3.8]], rtol=1e-6)
    # K=3: 0.9 self, 0.1 / 2 = 0.05 each other. Columns [1], [2], [4]:
    # 0.9 + 0.1 + 0.2 = 1.2;  0.05 + 1.8 + 0.2 = 2.05;  0.05 + 0.1 + 3.6 = 3.75
    three = cross_stitch.CrossStitch()
    outs = three([tf.constant([[1.0]]), tf.constant([[2.0]]), tf.constant([[4.0]])])
    np.testing.assert_allclose([o.numpy()[0, 0] for o in outs], [1.2, 2.05, 3.75], rtol=1e-6)
    np.testing.assert_allclose(three.alpha.numpy(), [[0.9, 0.05, 0.05], [0.05, 0.9, 0.05],
                                                     [0.05, 0.05, 0.9]], rtol=1e-6)
    np.testing.assert_allclose(cross_stitch.initial_matrix(1), [[1.0]])
    # A learned matrix is used as is: [[0.5, 0.5], [0, 1]] -> [2, 3] and [3, 4].
    unit.alpha.assign([[0.5, 0.5], [0.0, 1.0]])
    a, b = unit([tf.constant([[1.0, 2.0]]), tf.constant([[3.0, 4.0]])])
    np.testing.assert_allclose([a.numpy()[0], b.numpy()[0]], [[2.0, 3.0], [3.0, 4.0]])
    with pytest.raises(ValueError, match="columns: must be a positive integer"):
        cross_stitch.initial_matrix(0)


def test_mix_experts_arithmetic():
    # gate [0.25, 0.75] over experts [1, 2] and [3, 4]: [0.25 + 2.25, 0.5 + 3] = [2.5, 3.5]
    mixed = blocks.MixExperts()([tf.constant([[0.25, 0.75]]), tf.constant([[1.0, 2.0]]),
                                 tf.constant([[3.0, 4.0]])])
    np.testing.assert_allclose(mixed.numpy(), [[2.5, 3.5]])


def test_mix_experts_equals_the_einsum_over_stacked_experts_values_and_gradients():
    # The mixture was einsum("be,bed->bd", gate, stack(experts)); the sum of broadcast
    # products that replaced it (faster, docs/BENCHMARKS.md) must give the same numbers.
    rng = np.random.default_rng(0)
    gate = tf.constant(rng.dirichlet(np.ones(4), size=64), tf.float32)
    experts = [tf.constant(rng.normal(size=(64, 32)), tf.float32) for _ in range(4)]
    upstream = tf.constant(rng.normal(size=(64, 32)), tf.float32)
    layer = blocks.MixExperts()
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([gate, *experts])
        new = layer([gate, *experts])
        old = tf.einsum("be,bed->bd", gate, tf.stack(experts, axis=1))
        new_loss, old_loss = tf.reduce_sum(new * upstream), tf.reduce_sum(old * upstream)
    np.testing.assert_allclose(new.numpy(), old.numpy(), rtol=1e-6, atol=1e-6)
    for a, b in zip(tape.gradient(new_loss, [gate, *experts]),
                    tape.gradient(old_loss, [gate, *experts])):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)


def test_mix_experts_has_no_batched_matmul():
    # The speed choice itself: no Einsum / BatchMatMul / Pack in the mixture's graph.
    layer = blocks.MixExperts()
    traced = tf.function(lambda g, a, b: layer([g, a, b])).get_concrete_function(
        tf.TensorSpec([None, 2]), tf.TensorSpec([None, 3]), tf.TensorSpec([None, 3]))
    ops = {op.type for op in traced.graph.get_operations()}
    assert not ops & {"Einsum", "BatchMatMulV2", "BatchMatMulV3", "Pack"}, ops


@pytest.mark.parametrize("name", architecture.ARCHITECTURES)
def test_a_family_built_for_one_task_has_one_head(name):
    # What a single-task baseline is: the family on the spec restricted to its task.
    config = dataclasses.replace(TINY, name=name, hidden_units=(3,), tower_units=())
    network = families.build(SPEC.restricted_to(["m"]), CARDINALITIES, NUM_CLASSES, config)
    out = network.model(_inputs())
    assert list(out) == ["m"] and out["m"].shape == (8, 3)
    assert not any(layer.name.startswith(("b_", "r_")) for layer in network.model.layers)
    partition = _partition_of(network, ["m"])
    assert not partition.shared and set(partition.owned) == {"m"}


def _partition_of(network, tasks):
    return ownership.partition(network.model, network.last_shared_variables(), tasks)


@pytest.mark.parametrize("data, field, message", [
    ({"experts": 0}, "experts", "must be a positive integer, got 0"),
    ({"levels": True}, "levels", "must be a positive integer, got True"),
    ({"task_experts": 1.5}, "task_experts", "must be a positive integer, got 1.5"),
    ({"name": "foo"}, "name", "unknown architecture 'foo' (one of: shared_bottom, mmoe, ple, "
                              "cross_stitch)"),
    ({"name": "single_task"}, "name", "unknown architecture 'single_task'"),
    ({"hidden_units": []}, "hidden_units", "must be a non-empty list of positive integers"),
    ({"tower_units": [4, 0]}, "tower_units", "must be a list of positive integers"),
    ({"dropout": 1.0}, "dropout", "must be a number in [0, 1), got 1.0"),
    ({"activation": "wiggle"}, "activation", "unknown Keras activation 'wiggle'"),
    ({"towers": [4]}, "towers", "unknown field (allowed: hidden_units, tower_units"),
])
def test_config_errors_name_the_field(data, field, message):
    with pytest.raises(ArchitectureError) as err:
        ArchitectureConfig.from_dict(data)
    assert str(err.value).startswith(f"architecture.{field}: {message}")
    assert [f for f, _ in err.value.problems] == [f"architecture.{field}"]


def test_config_from_dict_and_checked_when_made():
    config = ArchitectureConfig.from_dict({"name": "ple", "hidden_units": [8, 4], "levels": 2})
    assert config == ArchitectureConfig(name="ple", hidden_units=(8, 4), levels=2)
    assert ArchitectureConfig.from_dict(None) == ArchitectureConfig()
    assert ArchitectureConfig(hidden_units=[8, 4], tower_units=[]).hidden_units == (8, 4)
    with pytest.raises(ArchitectureError, match=r"^architecture: must be a mapping"):
        ArchitectureConfig.from_dict([1])
    with pytest.raises(ArchitectureError) as err:  # every problem at once
        ArchitectureConfig(experts=0, dropout=-0.1)
    assert [f for f, _ in err.value.problems] == ["architecture.experts", "architecture.dropout"]


def test_missing_cardinality_names_the_feature():
    with pytest.raises(ValueError, match=r"cardinalities\['q'\]: the bucketized feature needs"):
        families.build(SPEC, {"c": 5}, NUM_CLASSES, CONFIGS["shared_bottom"])


@pytest.mark.parametrize("name", architecture.ARCHITECTURES)
def test_saved_model_round_trip(name, tmp_path):
    config = ArchitectureConfig(name=name, hidden_units=(2,), tower_units=(), experts=2)
    model = families.build(SPEC, CARDINALITIES, NUM_CLASSES, config).model
    specs = {key: tf.TensorSpec([None], t.dtype, key) for key, t in _inputs().items()}
    model.serve = tf.function(lambda inputs: model(inputs, training=False),
                              input_signature=[specs])
    tf.saved_model.save(model, str(tmp_path))
    loaded = tf.saved_model.load(str(tmp_path))
    inputs = _inputs(seed=5)
    expected, got = model(inputs), loaded.serve(inputs)
    assert set(got) == set(SPEC.task_names)
    for task in SPEC.task_names:
        np.testing.assert_allclose(got[task].numpy(), expected[task].numpy(), rtol=1e-5)


_OTHER_KERAS = "TFX_MTL_ARCH_OTHER_KERAS"


def _legacy_keras():
    return tf.keras.__name__.startswith("tf_keras")


@pytest.mark.subprocess
@pytest.mark.skipif(os.environ.get(_OTHER_KERAS) is not None, reason="this is the other-Keras run")
def test_this_file_also_passes_under_the_other_keras():
    # tfx_mtl pins tf.keras to Keras 3 only by default (os.environ.setdefault): a process
    # started with TF_USE_LEGACY_KERAS=1 gets Keras 2 (tf_keras), and the models work there
    # too, so run this file again under the Keras this process does not use.
    other = "0" if _legacy_keras() else "1"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider"],
        env={**os.environ, _OTHER_KERAS: other, "TF_USE_LEGACY_KERAS": other},
        cwd=pathlib.Path(__file__).resolve().parents[2], capture_output=True, text=True,
        timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


@pytest.mark.skipif(os.environ.get(_OTHER_KERAS) is None, reason="only in the other-Keras run")
def test_the_other_keras_run_uses_the_other_keras():
    assert _legacy_keras() == (os.environ[_OTHER_KERAS] == "1")


def test_every_configurable_architecture_has_a_builder_and_no_other():
    # architecture.ARCHITECTURES (what a config accepts) cannot import the families
    # (they import it); the builders' table must name exactly the same ones.
    assert tuple(families.BUILDERS) == architecture.ARCHITECTURES
