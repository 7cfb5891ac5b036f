"""Which ``tf.distribute`` strategy the Trainer runs under.

Several GPUs, or several logical CPU devices (as tests and laptops can set up
with :func:`split_cpu`), mean ``MirroredStrategy`` over them; otherwise the
default (single-device) strategy. The training loop is written for replica
contexts either way, so one code path serves both.
"""
from __future__ import annotations

import tensorflow as tf


class DeviceSetupError(RuntimeError):
    """Logical devices can only be configured before TensorFlow initialises."""


def split_cpu(replicas: int) -> None:
    """Splits the host CPU into ``replicas`` logical devices (before TF initialises)."""
    if replicas < 1:
        raise ValueError(f"cpu replicas: must be a positive integer, got {replicas}")
    cpu = tf.config.list_physical_devices("CPU")[0]
    wanted = [tf.config.LogicalDeviceConfiguration()] * replicas
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == replicas:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, wanted)
    except RuntimeError as e:
        raise DeviceSetupError(
            f"cannot split the CPU into {replicas} devices: TensorFlow is already "
            f"initialised in this process ({e}); set it up before any TensorFlow op runs"
        ) from None


def strategy() -> tf.distribute.Strategy:
    """MirroredStrategy over several GPUs or logical CPUs, else the default strategy."""
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy([d.name for d in gpus])
    if gpus:
        return tf.distribute.get_strategy()
    cpus = tf.config.list_logical_devices("CPU")
    if len(cpus) > 1:
        # Logical CPU devices have no NCCL; reduce on the host.
        return tf.distribute.MirroredStrategy(
            [d.name for d in cpus],
            cross_device_ops=tf.distribute.ReductionToOneDevice(reduce_to_device=cpus[0].name))
    return tf.distribute.get_strategy()


def describe(strategy_: tf.distribute.Strategy) -> str:
    """One line for the log: the strategy's class and its replicas."""
    try:
        devices = tuple(strategy_.extended.worker_devices)
    except RuntimeError:  # the default strategy has no device list
        devices = ()
    return (f"{type(strategy_).__name__} with {strategy_.num_replicas_in_sync} replica(s)"
            + (f" on {', '.join(devices)}" if devices else ""))
