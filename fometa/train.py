"""The training loop: compiled chunks of meta-iterations, evaluation, and the run directory."""

from __future__ import annotations

import functools
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from fometa.config import Config
from fometa.learner import MetaLearner, MetaState, evaluate
from fometa.problems import Problem, make_learner, make_problem
from fometa.sharding import (Mesh, check_divisible, device_names, mesh_size, replicate,
                             replicated, select_devices, shard_tasks, task_mesh, task_sharded)

def mean_ci95(values: np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of its 95% normal confidence interval."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return float(values.mean()), float("nan")
    return float(values.mean()), float(1.96 * values.std(ddof=1) / math.sqrt(values.size))


def task_batch(problem: Problem, key: jax.Array, meta_batch: int):
    """`meta_batch` training tasks with a leading task axis."""
    return jax.vmap(problem.train_task)(jax.random.split(key, meta_batch))


def chunk_runner(learner: MetaLearner, problem: Problem, meta_batch: int, train_key: jax.Array,
                 mesh: Mesh | None = None, unroll: int | bool = 1):
    """A jitted `run(state, iterations) -> (state, mean metrics)` over a run of iterations.

    Iteration i samples its tasks from `fold_in(train_key, i)`, so results do not depend on
    how the run is cut into chunks. Sampling, inner loops and meta-updates all stay on the
    device inside one `lax.scan`.

    With a `mesh` (default: one device; see `fometa.sharding`) the state, the iteration
    numbers and the outputs are replicated over its devices, and each iteration's sampled
    task batch ([meta_batch, ...] leaves) is constrained to be split along the mesh's
    "tasks" axis, so that every device samples and adapts to meta_batch/D tasks and the
    task mean becomes an all-reduce. `meta_batch` must be divisible by the mesh's size.
    `unroll`: of the `lax.scan` over iterations (XLA:GPU runs a loop's control on the host,
    so unrolling may pay there; `benchmarks/preset_speed.py --chunk-unroll`).
    """
    mesh = task_mesh() if mesh is None else mesh
    check_divisible(meta_batch, mesh)

    def body(state, i):
        tasks = task_batch(problem, jax.random.fold_in(train_key, i), meta_batch)
        return learner.step(state, shard_tasks(tasks, mesh))

    whole = replicated(mesh)

    @functools.partial(jax.jit, in_shardings=(whole, whole), out_shardings=(whole, whole))
    def meta_chunk(state, iterations):
        state, metrics = jax.lax.scan(body, state, iterations, unroll=unroll)
        return state, jax.tree_util.tree_map(jnp.mean, metrics)

    return meta_chunk


def evaluate_tasks(learner: MetaLearner, state: MetaState, problem: Problem, key: jax.Array,
                   num_tasks: int, memory: int | None = None,
                   mesh: Mesh | None = None) -> dict[str, np.ndarray]:
    """The metrics after adaptation on `num_tasks` evaluation tasks, each shape [num_tasks].

    Tasks are sampled and adapted to on the device in vmapped chunks sized so that their
    data, and activations estimated at 32x the data, stay under `memory` bytes per device
    (default 1 GiB on CPU, 16 GiB on accelerators). With a `mesh` (default: one device)
    each chunk's task keys ([chunk, 2]) are split over its D devices, so the chunk is a
    multiple of D; the state is replicated. Results do not depend on D or the chunking.
    """
    mesh = task_mesh() if mesh is None else mesh
    n = mesh_size(mesh)
    if memory is None:
        memory = 1 << 30 if jax.default_backend() == "cpu" else 1 << 34
    task_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(
        jax.eval_shape(problem.eval_task, key)))
    per_device = max(1, min(-(-num_tasks // n), 1000, memory // (32 * max(task_bytes, 1))))
    chunk = n * per_device
    whole, split = replicated(mesh), task_sharded(mesh)

    @functools.partial(jax.jit, in_shardings=(whole, split), out_shardings=whole)
    def eval_chunk(state, keys):
        tasks = shard_tasks(jax.vmap(problem.eval_task)(keys), mesh)
        return evaluate(learner, state, tasks, problem.metric_fn)

    state = replicate(state, mesh)
    keys = jax.random.split(key, num_tasks)
    padded = num_tasks + (-num_tasks % chunk)  # repeat tasks to fill the last chunk
    keys = keys[jnp.arange(padded) % num_tasks] if padded > num_tasks else keys
    out = [jax.device_get(eval_chunk(state, jax.device_put(keys[i:i + chunk], split)))
           for i in range(0, len(keys), chunk)]
    return {k: np.concatenate([o[k] for o in out])[:num_tasks] for k in out[0]}


def summarize(problem: Problem, values: dict[str, np.ndarray], **extra) -> dict[str, Any]:
    """`results.json`'s evaluation entries: "eval" for the main metric, and "eval_<mode>"
    for variants such as "accuracy_transductive"."""
    out = {}
    for name, v in values.items():
        mean, ci95 = mean_ci95(v)
        entry = {"metric": problem.metric, "mean": mean, "ci95": ci95, "tasks": len(v), **extra}
        suffix = name[len(problem.metric) + 1:] if name.startswith(problem.metric + "_") else None
        out["eval" if name == problem.metric else f"eval_{suffix or name}"] = entry
    return out


def versions() -> dict[str, str]:
    import fometa

    return {"fometa": fometa.__version__, "jax": jax.__version__, "flax": flax.__version__,
            "optax": optax.__version__}


def devices(mesh: Mesh | None = None) -> list[str]:
    """The devices a run uses (default: all of `jax.devices()`)."""
    return device_names(mesh if mesh is not None else task_mesh(jax.devices()))


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    tmp.replace(path)


def setup(cfg: Config):
    """The problem, learner and keys of a run (shared by `train` and `evaluate_run`)."""
    problem = make_problem(cfg)
    learner = make_learner(cfg, problem)
    init_key, train_key, eval_key = jax.random.split(jax.random.PRNGKey(cfg.seed), 3)
    return problem, learner, init_key, train_key, eval_key


class TrainingInterrupted(KeyboardInterrupt):
    """Raised by `train` after Ctrl-C (SIGINT): a checkpoint at `iteration` was written."""

    def __init__(self, iteration: int):
        super().__init__(f"interrupted at meta-iteration {iteration}; "
                         "rerun the same command to resume")
        self.iteration = iteration


# Settings that may differ between a run and its resumption: they change no number.
RESUMABLE = ("checkpoint_every",)
PERIODIC_EVAL_TASKS = 1000  # periodic evaluations use min(eval_tasks, this) tasks


def checkpoint_interval(cfg: Config) -> int:
    """Meta-iterations between checkpoints (default: every 10 logged chunks)."""
    return cfg.checkpoint_every or 10 * cfg.log_every


def _crossed(done: int, n: int, every: int | None) -> bool:
    """Whether the chunk (done - n, done] reached a multiple of `every`."""
    return bool(every) and done // every > (done - n) // every


def read_config(path: Path, hint: str = "") -> Config:
    """The `Config` saved in a run's config.json; a one-line ConfigError if it cannot be read."""
    from fometa.config import ConfigError

    try:
        return Config.from_dict(json.loads(path.read_text())["config"])
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path} could not be read ({type(e).__name__}){hint}") from None


def _check_same_config(run_dir: Path, cfg: Config) -> None:
    """Raises a one-line ConfigError naming the settings in which `run_dir`'s saved
    config.json differs from `cfg` (versions and devices are bookkeeping, not compared)."""
    from fometa.config import ConfigError

    path = run_dir / "config.json"
    if not path.is_file():
        return
    saved = read_config(path, "; choose another --run-dir").to_dict()
    saved, now = json.loads(json.dumps(saved)), json.loads(json.dumps(cfg.to_dict()))
    diff = [k for k in now if k not in RESUMABLE and saved.get(k) != now[k]]
    if diff:
        changes = ", ".join(f"{k.replace('_', '-')} {saved.get(k)!r} there, {now[k]!r} now"
                            for k in diff)
        raise ConfigError(f"run dir {run_dir} holds a run with other settings ({changes}); "
                          "rerun with its settings to resume it, or choose another --run-dir")


def _trim_metrics(path: Path, iteration: int, meta_iters: int) -> float:
    """Drops metrics.jsonl's lines past checkpoint `iteration` (and a final evaluation that
    will be redone), so that a resumed run's file reads as one run; returns the training
    seconds logged up to there."""
    if not path.is_file():
        return 0.0
    kept, seconds = [], 0.0
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
            it = int(entry["iteration"])
        except (ValueError, KeyError, TypeError):
            continue  # a partly written last line
        final_eval = entry.get("kind") == "eval" and it == meta_iters
        if it <= iteration and not final_eval:
            kept.append(line)
            if entry.get("kind") == "train":
                seconds = float(entry.get("seconds", seconds))
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    tmp.replace(path)
    return seconds


def _tensorboard_writer(run_dir: Path):
    from fometa.config import ConfigError

    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise ConfigError("--tensorboard needs the tensorboardX package; install it with "
                          "pip install 'fometa[tensorboard]'") from None
    return SummaryWriter(str(run_dir / "tensorboard"))


def _sigint_flag():
    """Installs a SIGINT handler that sets a flag (a second Ctrl-C stops at once); returns
    the flag (a dict) and a function restoring the previous handler."""
    import signal
    import threading

    flag = {"stop": False}
    if threading.current_thread() is not threading.main_thread():
        return flag, lambda: None

    def handler(signum, frame):
        if flag["stop"]:
            raise KeyboardInterrupt
        flag["stop"] = True

    previous = signal.signal(signal.SIGINT, handler)
    return flag, lambda: signal.signal(signal.SIGINT, previous)


def train(cfg: Config, run_dir: str | Path, *, progress: bool = True,
          tensorboard: bool = False) -> dict[str, Any]:
    """Meta-trains, evaluates and writes the run directory; returns `results.json`'s content.

    Checkpoints go to `RUN_DIR/checkpoints/` every `checkpoint_interval(cfg)` meta-iterations
    (at the first chunk end at or past each multiple), at the end and on Ctrl-C. If the run
    directory already holds checkpoints of a run with the same settings, training resumes
    from the newest one and ends exactly as an uninterrupted run would; `results.json`
    records `resumed_from` (0 for a fresh run). A directory with other settings is refused
    with a ConfigError. A run that is already complete is not trained again: its
    `results.json` is returned with `"already_complete": True` added.

    Ctrl-C (SIGINT) stops at the next chunk end after writing a checkpoint and raises
    `TrainingInterrupted`; no results.json is written.

    The task batches are split over the devices `cfg.devices` names (see `fometa.sharding`).
    Under `jax.distributed` every process runs this function and takes part in every
    computation, but only process 0 writes the run directory's files and shows progress.
    """
    from tqdm.auto import tqdm

    from fometa.checkpoint import Checkpoints

    mesh = task_mesh(select_devices(cfg.devices))
    check_divisible(cfg.meta_batch, mesh)
    main = jax.process_index() == 0
    progress = progress and main
    run_dir = Path(run_dir)
    _check_same_config(run_dir, cfg)
    problem, learner, init_key, train_key, eval_key = setup(cfg)
    state = replicate(learner.init(problem.init_params(init_key)), mesh)
    checkpoints = Checkpoints(run_dir)
    latest = checkpoints.latest_step()
    results_path = run_dir / "results.json"
    if latest == cfg.meta_iters and results_path.is_file():
        checkpoints.close()
        return {**json.loads(results_path.read_text()), "already_complete": True}
    writer = _tensorboard_writer(run_dir) if tensorboard and main else None
    resumed_from, seconds_before = 0, 0.0
    if latest is not None:
        state, train_key, resumed_from = checkpoints.restore(state, train_key)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_json(run_dir / "config.json",
                    {"config": cfg.to_dict(), "versions": versions(), "devices": devices(mesh)})
        results_path.unlink(missing_ok=True)
        seconds_before = _trim_metrics(run_dir / "metrics.jsonl", resumed_from, cfg.meta_iters)
    run = chunk_runner(learner, problem, cfg.meta_batch, train_key, mesh)

    start = time.perf_counter()
    compiled: dict[int, Any] = {}
    compile_seconds = 0.0
    metrics_file = (run_dir / "metrics.jsonl").open("a") if main else open(os.devnull, "w")
    bar = tqdm(total=cfg.meta_iters, initial=resumed_from, unit="it", disable=not progress,
               dynamic_ncols=True, desc=f"{cfg.algorithm} {cfg.dataset}")
    done, loss, postfix = resumed_from, "nan", {}
    every = checkpoint_interval(cfg)
    flag, restore_handler = _sigint_flag()

    def log(entry: dict[str, Any]) -> None:
        metrics_file.write(json.dumps(entry) + "\n")
        metrics_file.flush()

    def evaluation(num_tasks: int) -> dict[str, Any]:
        evals = summarize(problem, evaluate_tasks(learner, state, problem, eval_key, num_tasks,
                                                  mesh=mesh),
                          inner_iters=cfg.eval_inner_iters)
        log({"kind": "eval", "iteration": done, **evals})
        postfix[problem.metric] = f"{evals['eval']['mean']:.4g}"
        bar.set_postfix(loss=loss, **postfix)
        if writer is not None:
            for name, entry in evals.items():
                writer.add_scalar(f"{name}/{entry['metric']}", entry["mean"], done)
        return evals

    try:
        with metrics_file, bar:
            while done < cfg.meta_iters:
                n = min(cfg.log_every, cfg.meta_iters - done)
                iterations = replicate(np.arange(done, done + n, dtype=np.int32), mesh)
                if n not in compiled:
                    t0 = time.perf_counter()
                    compiled[n] = run.lower(state, iterations).compile()
                    compile_seconds += time.perf_counter() - t0
                state, metrics = compiled[n](state, iterations)
                metrics = {k: float(v) for k, v in metrics.items()}
                done += n
                elapsed = seconds_before + time.perf_counter() - start if main else 0.0
                log({"kind": "train", "iteration": done, **metrics,
                     "seconds": round(elapsed, 3)})
                if writer is not None:
                    for k, v in metrics.items():
                        writer.add_scalar(f"train/{k}", v, done)
                bar.update(n)
                loss = f"{metrics.get('query_loss', metrics.get('support_loss', math.nan)):.4g}"
                bar.set_postfix(loss=loss, **postfix)
                if done < cfg.meta_iters and _crossed(done, n, cfg.eval_every):
                    evaluation(min(cfg.eval_tasks, PERIODIC_EVAL_TASKS))
                if done == cfg.meta_iters or _crossed(done, n, every) or flag["stop"]:
                    checkpoints.save(done, state, train_key)
                if flag["stop"]:
                    raise TrainingInterrupted(done)
            train_seconds = time.perf_counter() - start
            evals = evaluation(cfg.eval_tasks)
    finally:
        restore_handler()
        checkpoints.close()
        if writer is not None:
            writer.close()

    state = jax.device_get(state)  # replicated, so every process holds all of it
    results = {
        "config": cfg.to_dict(),
        **evals,
        "meta_iterations": done,
        "resumed_from": resumed_from,
        "wall_seconds": time.perf_counter() - start,
        "train_seconds": train_seconds,
        "compile_seconds": compile_seconds,
        "devices": devices(mesh),
    }
    if main:
        _write_json(results_path, results)
        from fometa.plots import plot_run

        plot_run(run_dir, cfg, problem, learner, state, eval_key)
    return results


def _restore(run_dir: Path, **overrides: Any):
    """A finished run's config (with `overrides` applied), the state of its newest
    checkpoint, and the problem, learner and evaluation key built once from that config."""
    import dataclasses

    from fometa.checkpoint import Checkpoints
    from fometa.config import ConfigError

    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise ConfigError(f"{config_path} not found; expected a run directory written by 'fometa train'")
    cfg = dataclasses.replace(read_config(config_path), **overrides)
    problem, learner, init_key, train_key, eval_key = setup(cfg)
    template = learner.init(problem.init_params(init_key))
    with Checkpoints(run_dir, create=False) as checkpoints:
        state, _, _ = checkpoints.restore(template, train_key)
    return cfg, state, problem, learner, eval_key


def load_run(run_dir: str | Path) -> tuple[Config, MetaState]:
    """The config and the state of a run's newest checkpoint."""
    cfg, state, _, _, _ = _restore(Path(run_dir))
    return cfg, state


def evaluate_run(run_dir: str | Path, *, eval_tasks: int | None = None,
                 eval_inner_iters: int | None = None) -> dict[str, Any]:
    """Re-evaluates a finished run, writes `RUN_DIR/eval.json` and returns its content."""
    overrides = {k: v for k, v in (("eval_tasks", eval_tasks),
                                   ("eval_inner_iters", eval_inner_iters)) if v}
    cfg, state, problem, learner, eval_key = _restore(Path(run_dir), **overrides)
    out = {**summarize(problem, evaluate_tasks(learner, state, problem, eval_key, cfg.eval_tasks),
                       inner_iters=cfg.eval_inner_iters),
           "meta_iterations": int(state.step)}
    _write_json(Path(run_dir) / "eval.json", out)
    return out
