"""What the `fometa` command sets up in its process before JAX compiles or touches a device:
`jax.distributed` started from `fometa train`'s flags or the environment, a CPU split into
devices (`split_cpu`), and the on-disk cache of compiled programs (`compile_cache`).

One process per host (or, to test, several on one machine): every process runs the same
command; `--devices all` then spans every process's devices, the task batch is split over
them, and only process 0 writes the run directory and shows progress. On CPUs the
processes' collectives go through gloo.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import platform
import tempfile
from pathlib import Path

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
    check_coordinator(values["coordinator"],
                      "--coordinator" if coordinator is not None else ENV["coordinator"])
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator_address=values["coordinator"],
                                   num_processes=values["num_processes"],
                                   process_id=values["process_id"])
    except (RuntimeError, ValueError, TypeError) as e:  # TypeError: counts beyond int32
        raise ConfigError(f"cannot join the processes of this run ({' '.join(str(e).split())[:200]}); "
                          "check --coordinator, --num-processes and --process-id") from None


def check_coordinator(address: str | None, name: str = "--coordinator") -> None:
    """A one-line ConfigError (naming `name`, the flag or variable it came from) for a
    coordinator address that is not HOST:PORT with a port from 1 to 65535 and an IPv6 host
    in brackets (JAX would fail with a traceback, crash, or wait without end)."""
    if address is None:
        return
    host, _, port = address.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if not (host.strip("[] ") and host == host.strip() and (bracketed or ":" not in host)
            and port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise ConfigError(f"{name} {address!r} is not allowed (expected HOST:PORT with a port "
                          "from 1 to 65535, an IPv6 host in brackets: 10.0.0.1:1234, "
                          "[::1]:1234)")


def check_x64() -> None:
    """A one-line ConfigError where JAX_ENABLE_X64 is on: fometa's runs set their dtypes
    with --dtype, and x64 would change the numbers (and a resume's) without a record."""
    if jax.config.jax_enable_x64:
        raise ConfigError("JAX's x64 mode is on (JAX_ENABLE_X64, jax_enable_x64), which "
                          "fometa's runs do not take (their dtype is --dtype, recorded in "
                          "config.json); turn it off")


def check_backend() -> None:
    """A one-line ConfigError where JAX cannot start a backend that the environment asks for
    (JAX_PLATFORMS=cuda on a machine without a GPU, a misspelt name), instead of JAX's
    traceback; a call after `split_cpu`, since it starts the backends."""
    try:
        jax.devices()
    except (RuntimeError, AssertionError, ValueError) as e:
        asked = os.environ.get("JAX_PLATFORMS") or jax.config.jax_platforms
        detail = " ".join(str(e).split())[:200] or type(e).__name__
        raise ConfigError(f"JAX cannot start a backend for JAX_PLATFORMS={asked!r} here "
                          f"({detail}); unset it or name one this machine has") from None


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


# `fometa train` and `fometa eval` keep their compiled programs in JAX's persistent
# compilation cache unless told otherwise (--compile-cache DIR or "off"; a
# JAX_COMPILATION_CACHE_DIR the user set is left alone).
COMPILE_CACHE_OFF = "off"
COMPILE_CACHE_MAX_BYTES = 2 * 2 ** 30  # 2 GiB; least recently used entries go beyond it
COMPILE_CACHE_DEFAULT = "$XDG_CACHE_HOME/fometa/jax/<machine>, else ~/.cache/fometa/jax/<machine>"


def machine_tag() -> str:
    """A short name for this host's instruction set: the architecture and a hash of the CPU's
    feature flags (/proc/cpuinfo where there is one). XLA:CPU compiles for the CPU it runs
    on and refuses, with a warning, an executable that needs features this one lacks; JAX's
    cache key does not include them, so machines sharing a home folder keep apart."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    flags = next((l.split(":", 1)[1] for l in lines if l.startswith(("flags", "Features"))), "")
    text = f"{platform.machine()} {platform.processor()} {' '.join(sorted(flags.split()))}"
    return f"{platform.machine() or 'cpu'}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def default_compile_cache() -> Path:
    """`COMPILE_CACHE_DEFAULT`: per user, since an entry is code that the next run executes
    (not under $FOMETA_CACHE_DIR, which a lab may share for decoded datasets), and per
    machine (`machine_tag`)."""
    home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(home) / "fometa" / "jax" / machine_tag()


def _writable(folder: Path) -> None:
    """Creates `folder` and checks that a file can be written in it (OSError if not)."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder):
        pass


def _utf8(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # a byte that is not UTF-8, kept by Python as a surrogate
        return False
    return True


def compile_cache(where: str | None = None) -> str | None:
    """Turns on JAX's persistent compilation cache for this process; returns its folder, or
    None where it stays off.

    A second run of the same program (a rerun, a resume, another seed, `fometa eval`) loads
    the executable instead of compiling it: XLA's code generation is most of a preset's
    8-20 s compile on a 2-core CPU (benchmarks/README.md, "Compile time per preset"). JAX
    keys an entry on the program, the compile options, the kind of device and its own
    version. `where`: a folder (created; one that cannot be written is a ConfigError),
    `COMPILE_CACHE_OFF`, or None: JAX_COMPILATION_CACHE_DIR where the user set it, else
    `default_compile_cache()` (left off, silently, where it cannot be written). Call it
    before the process's first compile: JAX decides once per process whether to cache.
    Across processes (`jax.distributed`) only process 0 writes entries. Without the
    `filelock` package the cache has no size limit.
    """
    if where == COMPILE_CACHE_OFF:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    if where is None and jax.config.jax_compilation_cache_dir:
        if not _utf8(jax.config.jax_compilation_cache_dir):
            raise ConfigError(f"JAX_COMPILATION_CACHE_DIR "
                              f"{ascii(jax.config.jax_compilation_cache_dir)} is not a valid "
                              "UTF-8 name (JAX cannot use it); unset it or choose another folder")
        return jax.config.jax_compilation_cache_dir
    allowed = f"expected a folder to write or {COMPILE_CACHE_OFF!r}"
    if where is not None and not where.strip():
        raise ConfigError(f"--compile-cache {where!r} is not allowed ({allowed})")
    if where is not None and not _utf8(where):
        raise ConfigError(f"--compile-cache {ascii(where)} is not a valid UTF-8 name ({allowed})")
    try:
        folder = Path(where).expanduser() if where is not None else default_compile_cache()
        if not _utf8(str(folder)):  # XLA takes the folder as UTF-8 text
            raise OSError(0, "not a valid UTF-8 name")
        _writable(folder)
    except (OSError, RuntimeError) as e:  # RuntimeError: no home folder to expand
        if where is None:
            return None
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ConfigError(f"--compile-cache {where!r} cannot be written ({reason}); "
                          f"{allowed}") from None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    if (jax.config.jax_compilation_cache_max_size == -1  # the user's limit, where set, stays
            and importlib.util.find_spec("filelock") is not None):  # JAX's size limit needs it
        jax.config.update("jax_compilation_cache_max_size", COMPILE_CACHE_MAX_BYTES)
    return str(folder)
