"""Processes and their devices: `jax.distributed` started from `fometa train`'s flags or the
environment, and a CPU split into devices (`split_cpu`), before JAX touches a device.

One process per host (or, to test, several on one machine): every process runs the same
command; `--devices all` then spans every process's devices, the task batch is split over
them, and only process 0 writes the run directory and shows progress. On CPUs the
processes' collectives go through gloo.
"""

from __future__ import annotations

import os

import jax

from fometa.errors import ConfigError

# Environment variables read when the flags are left out (a launcher can set them per
# process); with neither, JAX detects the cluster itself (SLURM, Open MPI, Kubernetes ...).
ENV = {"coordinator": "FOMETA_COORDINATOR", "num_processes": "FOMETA_NUM_PROCESSES",
       "process_id": "FOMETA_PROCESS_ID"}


def start(coordinator: str | None = None, num_processes: int | None = None,
          process_id: int | None = None) -> None:
    """Joins this process to a multi-process JAX run (`jax.distributed.initialize`), each
    value from its argument, else from `ENV`, else from JAX's cluster detection."""
    values = {"coordinator": coordinator, "num_processes": num_processes,
              "process_id": process_id}
    for name, value in values.items():
        if value is None and os.environ.get(ENV[name]):
            text = os.environ[ENV[name]]
            if name != "coordinator" and not (text.isascii() and text.isdigit()):
                raise ConfigError(f"{ENV[name]}={text!r} is not a whole number")
            values[name] = text if name == "coordinator" else int(text)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator_address=values["coordinator"],
                                   num_processes=values["num_processes"],
                                   process_id=values["process_id"])
    except (RuntimeError, ValueError) as e:
        raise ConfigError(f"cannot join the processes of this run ({' '.join(str(e).split())[:200]}); "
                          "check --coordinator, --num-processes and --process-id") from None


HOST_DEVICE_FLAG = "--xla_force_host_platform_device_count"


def split_cpu(devices: str) -> None:
    """`--devices N` (N > 1) where JAX has no other devices: the CPU as N JAX devices
    (`jax_num_cpu_devices`), so that the task batch is split over its cores.

    XLA:CPU runs one program's operations mostly one at a time, and only its dots
    (YNNPACK's) spread over several cores; N programs side by side, each on 1/N of the
    tasks, overlap the rest (on 2 cores 1.22-1.37x per meta-step: benchmarks/README.md,
    "The CPU as two devices"). Only the CPU backend's device count changes, so where the
    devices are GPUs nothing does. Left alone: "all" and 1; a run across processes
    (`jax.distributed`, where `--devices` counts every process's devices); a CPU device
    count the user has set (XLA_FLAGS' host device count, or JAX_NUM_CPU_DEVICES /
    `jax_num_cpu_devices`); and a process whose JAX has started its backends (`fometa
    train`'s library function `fometa.run.train` never splits: set
    `jax.config.update("jax_num_cpu_devices", N)` right after `import jax` instead).
    """
    if devices == "all" or int(devices) < 2:  # `devices` passed the Devices setting's check
        return
    if jax.distributed.is_initialized() or jax.config.jax_num_cpu_devices >= 0:
        return
    if HOST_DEVICE_FLAG in os.environ.get("XLA_FLAGS", ""):
        return
    try:
        jax.config.update("jax_num_cpu_devices", int(devices))
    except RuntimeError:  # backends already started: select_devices says how many there are
        pass
