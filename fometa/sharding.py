"""Data parallelism over tasks: a 1-D device mesh whose "tasks" axis splits task batches.

Parameters and optimizer states are replicated on every device of the mesh; a task batch
(any pytree whose leaves have a leading task axis, shape [tasks, ...]) is split along that
axis, so each of the mesh's D devices holds and adapts to tasks/D of the tasks. The mean
over tasks in `MetaLearner.step` then becomes a cross-device reduction that XLA inserts.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from fometa.errors import ConfigError

TASKS = "tasks"  # the mesh axis that task batches are split along


def select_devices(spec: str) -> list[jax.Device]:
    """The devices that `--devices spec` names: "all" (every device of `jax.devices()`,
    across all processes when `jax.distributed` is initialised) or the first N of them.

    Raises ConfigError when N is more than there are devices.
    """
    available = jax.devices()
    if spec == "all":
        return list(available)
    n = int(spec)
    if n > len(available):
        raise ConfigError(f"--devices {n} but only {len(available)} device"
                          f"{'s are' if len(available) != 1 else ' is'} available")
    return list(available[:n])


def task_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh of shape [len(devices)] over the "tasks" axis (default: the first device)."""
    devices = list(devices) if devices is not None else jax.devices()[:1]
    return Mesh(np.array(devices, dtype=object), (TASKS,))


def mesh_size(mesh: Mesh) -> int:
    """The number of devices that a task batch is split over."""
    return int(mesh.shape[TASKS])


def check_divisible(count: int, mesh: Mesh, what: str = "meta_batch") -> None:
    """Raises a one-line ConfigError unless `count` tasks split evenly over the mesh."""
    n = mesh_size(mesh)
    if count % n:
        raise ConfigError(f"{what} {count} is not divisible by the {n} devices it is "
                          f"sharded over (--devices {n}); choose a multiple of {n}")


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding of arrays copied whole onto every device of the mesh (params, states)."""
    return NamedSharding(mesh, PartitionSpec())


def task_sharded(mesh: Mesh) -> NamedSharding:
    """The sharding of an array of shape [tasks, ...] split along its leading axis."""
    return NamedSharding(mesh, PartitionSpec(TASKS))


def shard_tasks(tree: Any, mesh: Mesh) -> Any:
    """Constrains every leaf of a task batch (leaves [tasks, ...]) to be split along its
    leading axis; for use inside `jax.jit`, where it pins XLA's sharding propagation so
    that per-task work (sampling, inner loops, meta-gradients) runs where its tasks live."""
    return jax.lax.with_sharding_constraint(tree, task_sharded(mesh))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places every leaf of `tree` (any shapes) whole on every device of the mesh."""
    return jax.device_put(tree, replicated(mesh))


def replicate_data(tree: Any, mesh: Mesh) -> Any:
    """Every array of `tree` whole on every device of the mesh, each device's copy made from
    this process's own host copy (a dataset that every process loaded alike), so that
    across processes nothing is gathered or compared; arrays already replicated over the
    mesh are kept, so that a dataset placed once serves every compiled program. Typed PRNG
    keys stay typed."""
    whole = replicated(mesh)

    def put(x):
        if isinstance(x, jax.Array) and x.sharding.is_equivalent_to(whole, x.ndim):
            return x
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            # a typed key (jax.random.key): its raw data placed, then wrapped again
            return jax.random.wrap_key_data(put(jax.random.key_data(x)),
                                            impl=jax.random.key_impl(x))
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, whole, lambda index: host[index])

    return jax.tree_util.tree_map(put, tree)


def device_names(mesh: Mesh) -> list[str]:
    """The mesh's devices as "platform:kind:id" strings, in mesh order, for run records."""
    return [f"{d.platform}:{d.device_kind}:{d.id}" for d in mesh.devices.flat]
