"""Training orchestration: settings to a finished run directory, and back (load, re-evaluate).

`train` meta-trains, evaluates and writes a run directory (resuming it where it holds
checkpoints of the same run); `load_run` and `evaluate_run` read a finished one.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, NamedTuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

import fometa
from fometa.algorithms import get_rule
from fometa.data.paths import DATA_DIR_ENV
from fometa.errors import ConfigError, DivergenceError, RunDirError, RunWarning
from fometa.learned_lr import uniform_rates
from fometa.learner import MetaLearner, MetaState, model_params
from fometa.run.checkpoint import Checkpoints
from fometa.run.evaluation import by_steps, curve_steps, evaluator, summarize
from fometa.run.interrupt import StopRequest, TrainingInterrupted
from fometa.run.loop import loop_runner
from fometa.run.plots import plot_run
from fometa.run.problems import (ALGORITHM_OPTIONS, Problem, check_problem, check_shapes,
                                 given_options, learned_rates, make_learner, make_problem,
                                 matmul_precision, tasks_at_once, uses_remat)
from fometa.run import report
from fometa.run.report import Reporter
from fometa.run.rundir import ADAPTATION, TENSORBOARD, RunDir
from fometa.run.settings import Config, check, evaluation_settings, flag
from fometa.sharding import (Mesh, check_divisible, device_names, replicate, replicate_data,
                             select_devices, task_mesh)

PERIODIC_EVAL_TASKS = 1000  # periodic evaluations use min(eval_tasks, this) tasks


class Setup(NamedTuple):
    """What a run builds from its settings: problem, learner and PRNG keys."""

    problem: Problem
    learner: MetaLearner
    init_key: jax.Array
    train_key: jax.Array
    eval_key: jax.Array


def seed_key(seed: int) -> jax.Array:
    """The PRNG key of a seed in [0, 2**64): its high and low 32-bit words as the threefry
    key, which is `jax.random.PRNGKey(seed)` for seeds below 2**32 (PRNGKey itself keeps
    only 32 bits of a seed unless jax_enable_x64 is on)."""
    return jnp.asarray([seed >> 32, seed & 0xFFFFFFFF], dtype=jnp.uint32)


def setup(cfg: Config, problem: Problem | None = None, training: bool = True) -> Setup:
    """The problem (default: `make_problem(cfg)`), learner and keys of a run (shared by
    `train` and `evaluate_run`; `training`: its training tasks are checked too)."""
    problem = check_problem(make_problem(cfg) if problem is None else problem)
    init_key, train_key, eval_key = jax.random.split(seed_key(cfg.seed), 3)
    check_shapes(problem, init_key, cfg.inner_iters if training else None, cfg.eval_inner_iters)
    learner = make_learner(cfg, problem)
    return Setup(problem, learner, init_key, train_key, eval_key)


def initial_state(cfg: Config, run: Setup) -> MetaState:
    """The meta-state a run starts from: the problem's initial parameters, with learned inner
    rates drawn from [inner-lr-low, inner-lr) where `--inner-lr-low` asks (from a key of
    their own, so that the other keys, and every other run, stay as they were).

    The problem's initialisation (`Problem.init_params`, any problem's) is one compiled
    program, and so is the learner's state around the parameters: run op by op, every
    operation compiled on its own, 4-6.5 s more per process for the image networks on a
    2-core CPU (benchmarks/README.md, "Start-up")."""
    params = jax.jit(run.problem.init_params)(run.init_key)
    if cfg.inner_lr_low is not None:
        params = uniform_rates(jax.random.fold_in(run.init_key, 1), params, cfg.inner_lr_low,
                               cfg.inner_lr, learned_rates(cfg), cfg.inner_iters)
    return jax.jit(run.learner.init)(params)


def data_digest(data: Any) -> str | None:
    """A digest of a problem's data (`Problem.data`; None for none): the arrays' shapes and
    types and at most 2**22 elements of each at a fixed stride, sampled on the accelerator
    that holds it (16 MiB reach the host, not the dataset). Another data folder (other images,
    splits swapped, classes added) gives another digest; a full read of Mini-ImageNet's
    1.3 GB at every start does not pay for the rest."""
    leaves = jax.tree_util.tree_leaves(data)
    if not leaves:
        return None
    digest = hashlib.blake2b(digest_size=8)
    for leaf in leaves:
        if jnp.issubdtype(leaf.dtype, jax.dtypes.extended):  # typed PRNG keys
            leaf = jax.random.key_data(leaf)
        stride = max(1, -(-int(np.size(leaf)) // 2 ** 22))
        on_accelerator = isinstance(leaf, jax.Array) and any(
            d.platform != "cpu" for d in leaf.devices())  # a CPU array is read in place
        flat = jnp.ravel(leaf) if on_accelerator else np.ravel(np.asarray(leaf))
        digest.update(f"{leaf.dtype}{np.shape(leaf)}".encode())
        digest.update(np.ascontiguousarray(np.asarray(flat[::stride])).tobytes())
    return digest.hexdigest()


def trained_on_other(rundir: RunDir, digest: str | None) -> str | None:
    """The digest of the data the run in `rundir` was trained on, where it is recorded and
    differs from `digest`; else None."""
    trained_on = rundir.read_data_digest()
    return trained_on if trained_on is not None and digest != trained_on else None


def check_same_data(rundir: RunDir, digest: str | None, cfg: Config) -> None:
    """A one-line RunDirError if the run in `rundir` was trained on data other than that
    with `digest`: resuming would go on with other data, silently."""
    trained_on = trained_on_other(rundir, digest)
    if trained_on is not None:
        raise RunDirError(f"{rundir.path} was trained on other data (digest {trained_on} "
                          f"there, {digest} in {_data_source(cfg)} now): point --data-dir or "
                          "FOMETA_DATA_DIR at the run's data (as the run read it: the same "
                          "images from another source may be in another order), or choose "
                          "another --run-dir")


def _data_source(cfg: Config) -> str:
    return cfg.data_dir or os.environ.get(DATA_DIR_ENV) or "the default data folder"


def versions() -> dict[str, str]:
    return {"fometa": fometa.__version__, "jax": jax.__version__, "flax": flax.__version__,
            "optax": optax.__version__}


def devices(mesh: Mesh | None = None) -> list[str]:
    """The devices a run uses (default: all of `jax.devices()`)."""
    return device_names(mesh if mesh is not None else task_mesh(jax.devices()))


CHUNK_SECONDS = 3.0  # the automatic chunk: about this long,
MIN_CHUNKS = 50      # and at least this many chunks (log lines) a run
FIRST_CHUNK = 10     # meta-iterations of the first chunk, timed to choose the others' length


def checkpoint_interval(cfg: Config, chunk: int) -> int:
    """Meta-iterations between checkpoints (default: every 10 chunks of `chunk`)."""
    return cfg.checkpoint_every or 10 * chunk


def auto_chunk(seconds_per_iteration: float, total: int) -> int:
    """The automatic chunk length: a round number (1, 2 or 5 times a power of ten) of
    meta-iterations, about CHUNK_SECONDS of training and at most total / MIN_CHUNKS."""
    target = max(1.0, min(CHUNK_SECONDS / max(seconds_per_iteration, 1e-9), total / MIN_CHUNKS))
    power = 10 ** math.floor(math.log10(target))
    return max(m * power for m in (1, 2, 5) if m * power <= target)


def _crossed(done: int, n: int, every: int | None) -> bool:
    """Whether the chunk (done - n, done] reached a multiple of `every`."""
    return bool(every) and done // every > (done - n) // every


Evaluate = Callable[..., tuple[dict[str, Any], dict[str, Any]]]


def evaluation(cfg: Config, run: Setup, mesh: Mesh | None = None) -> Evaluate:
    """`evaluate(state, num_tasks, progress=None) -> (results.json's evaluation entries,
    inner_steps.json)`
    on tasks drawn from the run's evaluation key: the metrics after `curve_steps` numbers
    of inner steps, from one adaptation per task; the entries are the last count's, so the
    curve ends at the evaluation. Compiled once, for the periodic and final evaluations."""
    steps = curve_steps(cfg.eval_inner_iters)
    evaluate = evaluator(run.learner, run.problem, mesh, steps)

    def run_evaluation(state: MetaState, num_tasks: int,
                       progress: Callable[[int, int], None] | None = None):
        values = evaluate(state, run.eval_key, num_tasks, progress)
        if not all(np.isfinite(v).all() for v in values.values()):
            raise DivergenceError(
                f"evaluation after meta-iteration {int(state.step)} is not finite (NaN or "
                f"inf): adaptation diverges at test time; look at {_steps(cfg)}, "
                f"--eval-inner-iters {cfg.eval_inner_iters}")
        final = {name: v[:, -1] for name, v in values.items()}
        return (summarize(run.problem, final, inner_iters=cfg.eval_inner_iters),
                by_steps(run.problem, values, steps))

    run_evaluation.prepare = lambda state, num_tasks: evaluate.prepare(state, run.eval_key,
                                                                        num_tasks)
    return run_evaluation


class Trained(NamedTuple):
    """The state after meta-training, and the seconds spent training (all sessions of a
    resumed run) and compiling (this session)."""

    state: MetaState
    train_seconds: float
    compile_seconds: float


def available_memory(device: jax.Device) -> int | None:
    """Bytes a device can still allocate: the accelerator's limit, or the host's available
    memory for the CPU (Linux); None where unknown."""
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _check_memory(compiled: Any, cfg: Config, mesh: Mesh, resident: int = 0) -> None:
    """A one-line ConfigError, before running it, for a compiled training step that needs
    more memory than its device has (instead of an out-of-memory crash). `resident`: bytes
    of its arguments already on each device (the dataset), which the available memory
    already excludes."""
    stats = compiled.memory_analysis()
    available = available_memory(mesh.devices.flat[0])
    if stats is None or available is None:
        return
    needed = (stats.temp_size_in_bytes + stats.argument_size_in_bytes
              + stats.output_size_in_bytes - resident)
    if needed > available:
        raise ConfigError(f"the training step needs {needed / 2**30:.1f} GiB of memory per "
                          f"device, {available / 2**30:.1f} GiB are available; lower "
                          f"--meta-batch {cfg.meta_batch} (or --inner-batch, --queries, "
                          f"--inner-iters {cfg.inner_iters}; --devices more)")


def _steps(cfg: Config) -> str:
    """The settings that size the steps, as flags, for divergence messages."""
    rule = get_rule(cfg.algorithm)
    outer = f"--meta-step {cfg.meta_step}" if rule.interpolates else f"--outer-lr {cfg.outer_lr}"
    values = {**rule.options, **given_options(cfg)}
    options = "".join(f", {flag(name)} {values[o]}" for o, name in ALGORITHM_OPTIONS.items()
                      if o in rule.options)
    return (f"--inner-lr {cfg.inner_lr} ({cfg.inner_optimizer}, --loss-reduction "
            f"{cfg.loss_reduction}{options}) and {outer}")


def _last_checkpoint(checkpoints: Checkpoints) -> str:
    latest = checkpoints.latest_step()
    return ("no checkpoint was written" if latest is None else
            f"the last checkpoint, at meta-iteration {latest}, is finite and kept")


class Chunks:
    """A run's compiled training loop (`loop_runner`: one program for chunks of any
    length), compiled ahead (`prepare`) and refused before it runs if it needs more memory
    than there is.

    `length` is `cfg.log_every`, or, where that is None, `auto_chunk` of the time that the
    first chunk, FIRST_CHUNK meta-iterations, took (`measured`)."""

    def __init__(self, cfg: Config, run: Setup, train_key: jax.Array, mesh: Mesh):
        self._cfg, self._mesh = cfg, mesh
        self._runner = loop_runner(run.learner, run.problem, cfg.meta_batch, train_key, mesh)
        self._compiled = None
        self.compile_seconds = 0.0
        self.length = cfg.log_every or FIRST_CHUNK
        self._auto = cfg.log_every is None

    def _scalar(self, value: int) -> jax.Array:
        return replicate(np.int32(value), self._mesh)

    def prepare(self, state: MetaState) -> None:
        """Compiles the loop (and checks its memory)."""
        if self._compiled is None:
            t0 = time.perf_counter()
            self._compiled = self._runner.lower(state, self._scalar(0), self._scalar(1)).compile()
            self.compile_seconds += time.perf_counter() - t0
            resident = sum(x.nbytes for x in jax.tree_util.tree_leaves(self._runner.data))
            _check_memory(self._compiled, self._cfg, self._mesh, resident)

    def measured(self, n: int, seconds: float, done: int) -> None:
        """The first chunk of an automatic length took `seconds` for `n` iterations."""
        if self._auto:
            self._auto = False
            self.length = auto_chunk(seconds / n, self._cfg.meta_iters)

    def __call__(self, state: MetaState, start: int, n: int):
        self.prepare(state)
        return self._compiled(state, self._scalar(start), self._scalar(n), self._runner.data)


def meta_train(cfg: Config, run: Setup, chunks: Chunks, state: MetaState, done: int,
               seconds_before: float, evaluate: Evaluate, checkpoints: Checkpoints,
               train_key: jax.Array, reporter: Reporter, stop: StopRequest) -> Trained:
    """Runs meta-iterations `done` to `cfg.meta_iters` in compiled chunks (`Chunks`),
    reporting each chunk, evaluating every `eval_every`, checkpointing every
    `checkpoint_interval(cfg, chunk)` and at the end; after a Ctrl-C (`stop`), checkpoints and
    raises TrainingInterrupted at the chunk's end."""
    start = time.perf_counter()
    while done < cfg.meta_iters:  # chunks end at multiples of their length
        n = min(chunks.length - done % chunks.length, cfg.meta_iters - done)
        t0 = time.perf_counter()
        state, metrics = chunks(state, done, n)
        diverged = int(metrics.pop("nonfinite_at", -1))
        if diverged >= 0:  # nothing of this chunk is logged or saved
            raise DivergenceError(
                f"meta-iteration {diverged + 1} made the loss or the parameters not finite "
                f"(NaN or inf); {_last_checkpoint(checkpoints)}; look at {_steps(cfg)}")
        done += n
        metrics = {k: float(v) for k, v in metrics.items()}
        chunks.measured(n, time.perf_counter() - t0, done)
        reporter.chunk(done, n, metrics, seconds_before + time.perf_counter() - start)
        every = checkpoint_interval(cfg, chunks.length)
        if done < cfg.meta_iters and _crossed(done, n, cfg.eval_every):
            try:
                evals, _ = evaluate(state, min(cfg.eval_tasks, PERIODIC_EVAL_TASKS),
                                    reporter.evaluating)
            except DivergenceError as e:
                raise DivergenceError(f"{e}; {_last_checkpoint(checkpoints)}") from None
            reporter.evaluation(done, evals)
        if done == cfg.meta_iters or _crossed(done, n, every) or stop.requested:
            checkpoints.save(done, state, train_key)
        if stop.requested:
            raise TrainingInterrupted(done)
    return Trained(state, seconds_before + time.perf_counter() - start, chunks.compile_seconds)


def record_figures(rundir: RunDir, curve: dict[str, Any], run: Setup, state: MetaState) -> None:
    """Writes the figures' data of a finished run: inner_steps.json (`curve`) and, where the
    problem illustrates adaptation, adaptation.json; `fometa.run.plots` draws them."""
    rundir.write_inner_steps(curve)
    if run.problem.illustrate is not None:
        adapt = functools.partial(run.learner.adapt, state)
        illustrate = jax.jit(lambda params, key: run.problem.illustrate(adapt, params, key))
        figure = jax.device_get(illustrate(model_params(state.params), run.eval_key))
        wrong = illustration_problem(figure)
        if wrong:  # a figure is not a result: the run is complete without it
            warnings.warn(f"{ADAPTATION} is not written: the problem's illustration {wrong}",
                          RunWarning, stacklevel=2)
        else:
            rundir.write_adaptation(figure)


def illustration_problem(figure: Any) -> str | None:
    """What is wrong with `figure` as an `Illustration` ({"x": [n], "lines": {label: [n]},
    "points": {label: {"x": [m], "y": [m]}}}, all finite), or None."""
    if not (isinstance(figure, dict) and set(figure) == {"x", "lines", "points"}
            and isinstance(figure["lines"], dict) and figure["lines"]
            and isinstance(figure["points"], dict)
            and all(isinstance(p, dict) and set(p) == {"x", "y"}
                    for p in figure["points"].values())):
        return ('is not {"x": [n], "lines": {label: [n], ...}, "points": {label: {"x": [m], '
                '"y": [m]}}}')
    if not all(np.isfinite(np.asarray(a, dtype=np.float64)).all()
               for a in jax.tree_util.tree_leaves(figure)):
        return "is not finite (NaN or inf)"
    return None


def train(cfg: Config, run_dir: str | Path, *, progress: bool = True,
          tensorboard: bool = False, plots: bool = True) -> dict[str, Any]:
    """Meta-trains, evaluates and writes the run directory; returns `results.json`'s content.

    Checkpoints go to `RUN_DIR/checkpoints/` every `checkpoint_interval(cfg)` meta-iterations
    (at the first chunk end at or past each multiple), at the end and on Ctrl-C. If the run
    directory already holds checkpoints of a run with the same settings, training resumes
    from the newest one and ends exactly as an uninterrupted run would; `results.json`
    records `resumed_from` (0 for a fresh run). A directory with other settings is refused
    with a RunDirError. A run that is already complete is not trained again: its
    `results.json` is returned with `"already_complete": True` added.

    Ctrl-C (SIGINT) stops at the next chunk end after writing a checkpoint and raises
    `TrainingInterrupted`; no results.json is written. `plots=False` leaves out the PNG
    plots (their data is written all the same).

    The task batches are split over the devices `cfg.devices` names (see `fometa.sharding`).
    Under `jax.distributed` every process runs this function and takes part in every
    computation, but only process 0 writes the run directory's files and shows progress.
    """
    mesh = task_mesh(select_devices(cfg.devices))
    check_divisible(cfg.meta_batch, mesh)
    rundir = RunDir(run_dir, writer=jax.process_index() == 0)
    open_tensorboard = report.tensorboard() if tensorboard and rundir.writer else None
    if open_tensorboard:
        rundir.check_folder(TENSORBOARD)
    with rundir.writing("fometa train"), matmul_precision(cfg.matmul_precision):
        rundir.check_config(cfg)
        return _train(cfg, rundir, mesh, progress, open_tensorboard, plots)


def _train(cfg: Config, rundir: RunDir, mesh: Mesh, progress: bool,
           open_tensorboard: Callable[[RunDir], Any] | None, plots: bool) -> dict[str, Any]:
    run = setup(cfg)
    data = run.problem.data  # as loaded: its digest is taken once the run is known unfinished
    # the dataset placed on the devices once, for the training loop and the evaluation
    run = run._replace(problem=run.problem._replace(data=replicate_data(data, mesh)))
    state = replicate(initial_state(cfg, run), mesh)
    with rundir.checkpoints() as checkpoints:
        latest = checkpoints.latest_step()
        finished = rundir.read_results()
        if latest == cfg.meta_iters and finished is not None:
            if plots and rundir.writer:
                plot_run(rundir, missing_only=True)  # a run killed while plotting
            return {**finished, "already_complete": True}
        train_key, resumed_from = run.train_key, 0
        if latest is not None and latest > cfg.meta_iters:
            raise RunDirError(f"{rundir.path} holds a checkpoint at meta-iteration {latest}, "
                              f"past this run's --meta-iters {cfg.meta_iters}: not this run's "
                              "(choose another --run-dir)")
        digest = data_digest(data)
        if latest is not None:
            check_same_data(rundir, digest, cfg)
            rundir.check_metrics()
            state, train_key, resumed_from = checkpoints.restore(state, train_key)
        start = time.perf_counter()
        chunks = Chunks(cfg, run, train_key, mesh)
        chunks.prepare(state)  # compiled and checked before anything is written
        evaluate = evaluation(cfg, run, mesh)
        evaluate.prepare(state, cfg.eval_tasks)  # compiled ahead too
        rundir.write_config(cfg, versions(), devices(mesh), digest)
        rundir.clear_results()
        seconds_before = rundir.trim_metrics(resumed_from, cfg.meta_iters)
        writer = open_tensorboard(rundir) if open_tensorboard else None  # Reporter closes it
        with Reporter(rundir, title=f"{cfg.algorithm} {cfg.dataset}", total=cfg.meta_iters,
                      done=resumed_from, metric=run.problem.metric,
                      progress=progress and rundir.writer, writer=writer) as reporter:
            with StopRequest() as stop:
                trained = meta_train(cfg, run, chunks, state, resumed_from, seconds_before,
                                     evaluate, checkpoints, train_key, reporter, stop)
            evals, curve = evaluate(trained.state, cfg.eval_tasks, reporter.evaluating)
            reporter.evaluation(cfg.meta_iters, evals)
            state = jax.device_get(trained.state)  # replicated: every process holds all of it
            results = {
                "config": cfg.to_dict(),
                **evals,
                "meta_iterations": cfg.meta_iters,
                "resumed_from": resumed_from,
                "wall_seconds": time.perf_counter() - start,
                "train_seconds": trained.train_seconds,
                "compile_seconds": trained.compile_seconds,
                # where compiled programs were kept and looked up (`processes.compile_cache`):
                # with one, compile_seconds may be a load of an earlier run's program
                "compile_cache": (jax.config.jax_compilation_cache_dir
                                  if jax.config.jax_enable_compilation_cache else None),
                "remat": uses_remat(cfg, jax.default_backend()),
                "tasks_at_once": tasks_at_once(cfg, jax.default_backend()),
                "devices": devices(mesh),
            }
            if rundir.writer:
                reporter.status("writing the figures' data")
                record_figures(rundir, curve, run, state)
            rundir.write_results(results)  # the run is complete from here; plots come last
            if plots and rundir.writer:
                reporter.status("plotting")
                plot_run(rundir)
            reporter.status("")
    return results


def _restore(run_dir: str | Path, **overrides: Any) -> tuple[RunDir, Config, MetaState, Setup]:
    """A finished run's directory, config (with `overrides` applied), the state of its newest
    checkpoint, and the problem, learner and keys built once from that config."""
    rundir = RunDir(run_dir, writer=jax.process_index() == 0)
    cfg = check(dataclasses.replace(rundir.read_config(), **overrides))
    run = setup(cfg, training=False)
    template = initial_state(cfg, run)
    with rundir.checkpoints(create=False) as checkpoints:
        state, _, _ = checkpoints.restore(template, run.train_key)
    return rundir, cfg, state, run


def load_run(run_dir: str | Path) -> tuple[Config, MetaState]:
    """The config and the state of a run's newest checkpoint."""
    _, cfg, state, _ = _restore(run_dir)
    return cfg, state


def evaluate_run(run_dir: str | Path, *, write: bool = True, **overrides: Any) -> dict[str, Any]:
    """Re-evaluates a run's newest checkpoint, with the evaluation settings in `overrides`
    changed (`fometa.run.settings.evaluation_settings`: shots, eval_inner_iters, eval_tasks,
    loss_reduction, ...; None keeps the run's), writes `RUN_DIR/eval.json` (unless not
    `write`) and returns its content, with the settings it used under "config"."""
    allowed = evaluation_settings()
    refused = sorted(set(overrides) - set(allowed))
    if refused:
        raise ConfigError(f"{', '.join(refused)} cannot change at evaluation; these can: "
                          f"{', '.join(allowed)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    writing = RunDir(run_dir, writer=write and jax.process_index() == 0).writing(
        "fometa eval", create=False)
    with writing:
        rundir, cfg, state, run = _restore(run_dir, **overrides)
        digest = data_digest(run.problem.data)
        trained_on = trained_on_other(rundir, digest)
        if trained_on is not None:  # may be meant: said, and recorded in eval.json
            warnings.warn(f"{rundir.path} was trained on other data than {_data_source(cfg)} "
                          f"holds (digest {trained_on} there, {digest} now); evaluating on "
                          "the data found now", RunWarning, stacklevel=2)
        with matmul_precision(cfg.matmul_precision):
            evals, _ = evaluation(cfg, run)(state, cfg.eval_tasks)
        out = {**evals, "meta_iterations": int(state.step), "config": cfg.to_dict(),
               "data": digest}
        if write:
            rundir.write_eval(out)
    return out
