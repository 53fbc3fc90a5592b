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
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from fometa.config import Config
from fometa.learner import MetaLearner, MetaState, evaluate
from fometa.problems import Problem, make_learner, make_problem
from fometa.sharding import (Mesh, check_divisible, device_names, mesh_size, replicate,
                             replicated, select_devices, shard_tasks, task_mesh, task_sharded)

STATE_FILE = "state.msgpack"


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
                 mesh: Mesh | None = None):
    """A jitted `run(state, iterations) -> (state, mean metrics)` over a run of iterations.

    Iteration i samples its tasks from `fold_in(train_key, i)`, so results do not depend on
    how the run is cut into chunks. Sampling, inner loops and meta-updates all stay on the
    device inside one `lax.scan`.

    With a `mesh` (default: one device; see `fometa.sharding`) the state, the iteration
    numbers and the outputs are replicated over its devices, and each iteration's sampled
    task batch ([meta_batch, ...] leaves) is constrained to be split along the mesh's
    "tasks" axis, so that every device samples and adapts to meta_batch/D tasks and the
    task mean becomes an all-reduce. `meta_batch` must be divisible by the mesh's size.
    """
    mesh = task_mesh() if mesh is None else mesh
    check_divisible(meta_batch, mesh)

    def body(state, i):
        tasks = task_batch(problem, jax.random.fold_in(train_key, i), meta_batch)
        return learner.step(state, shard_tasks(tasks, mesh))

    whole = replicated(mesh)

    @functools.partial(jax.jit, in_shardings=(whole, whole), out_shardings=(whole, whole))
    def meta_chunk(state, iterations):
        state, metrics = jax.lax.scan(body, state, iterations)
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


def train(cfg: Config, run_dir: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """Meta-trains, evaluates and writes the run directory; returns `results.json`'s content.

    The task batches are split over the devices `cfg.devices` names (see `fometa.sharding`).
    Under `jax.distributed` every process runs this function and takes part in every
    computation, but only process 0 writes the run directory and shows progress.
    """
    from tqdm.auto import tqdm

    mesh = task_mesh(select_devices(cfg.devices))
    check_divisible(cfg.meta_batch, mesh)
    main = jax.process_index() == 0
    progress = progress and main
    run_dir = Path(run_dir)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_json(run_dir / "config.json",
                    {"config": cfg.to_dict(), "versions": versions(), "devices": devices(mesh)})
    problem, learner, init_key, train_key, eval_key = setup(cfg)
    state = replicate(learner.init(problem.init_params(init_key)), mesh)
    run = chunk_runner(learner, problem, cfg.meta_batch, train_key, mesh)

    start = time.perf_counter()
    compiled: dict[int, Any] = {}
    compile_seconds = 0.0
    metrics_file = (run_dir / "metrics.jsonl").open("w") if main else open(os.devnull, "w")
    bar = tqdm(total=cfg.meta_iters, unit="it", disable=not progress, dynamic_ncols=True,
               desc=f"{cfg.algorithm} {cfg.dataset}")
    done = 0
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
            elapsed = time.perf_counter() - start
            metrics_file.write(json.dumps({"kind": "train", "iteration": done, **metrics,
                                           "seconds": round(elapsed, 3)}) + "\n")
            metrics_file.flush()
            bar.update(n)
            loss = f"{metrics.get('query_loss', metrics.get('support_loss', math.nan)):.4g}"
            bar.set_postfix(loss=loss)
        train_seconds = time.perf_counter() - start

        evals = summarize(problem, evaluate_tasks(learner, state, problem, eval_key,
                                                  cfg.eval_tasks, mesh=mesh),
                          inner_iters=cfg.eval_inner_iters)
        metrics_file.write(json.dumps({"kind": "eval", "iteration": done, **evals}) + "\n")
        bar.set_postfix(loss=loss, **{problem.metric: f"{evals['eval']['mean']:.4g}"})

    state = jax.device_get(state)  # replicated, so every process holds all of it
    results = {
        "config": cfg.to_dict(),
        **evals,
        "meta_iterations": done,
        "wall_seconds": time.perf_counter() - start,
        "train_seconds": train_seconds,
        "compile_seconds": compile_seconds,
        "devices": devices(mesh),
    }
    if main:
        (run_dir / STATE_FILE).write_bytes(flax.serialization.to_bytes(state))
        _write_json(run_dir / "results.json", results)
        from fometa.plots import plot_run

        plot_run(run_dir, cfg, problem, learner, state, eval_key)
    return results


def load_run(run_dir: str | Path) -> tuple[Config, MetaState]:
    """The config and final state of a finished run."""
    from fometa.config import ConfigError

    run_dir = Path(run_dir)
    config_path, state_path = run_dir / "config.json", run_dir / STATE_FILE
    for path in (config_path, state_path):
        if not path.is_file():
            raise ConfigError(f"{path} not found; expected a run directory written by 'fometa train'")
    cfg = Config.from_dict(json.loads(config_path.read_text())["config"])
    problem, learner, init_key, _, _ = setup(cfg)
    template = learner.init(problem.init_params(init_key))
    try:
        state = flax.serialization.from_bytes(template, state_path.read_bytes())
    except Exception as e:  # msgpack raises several types for a damaged file
        raise ConfigError(f"{state_path} could not be read ({type(e).__name__}); "
                          "the file is damaged or from another config") from None
    return cfg, state


def evaluate_run(run_dir: str | Path, *, eval_tasks: int | None = None,
                 eval_inner_iters: int | None = None) -> dict[str, Any]:
    """Re-evaluates a finished run, writes `RUN_DIR/eval.json` and returns its content."""
    import dataclasses

    cfg, state = load_run(run_dir)
    cfg = dataclasses.replace(cfg, eval_tasks=eval_tasks or cfg.eval_tasks,
                              eval_inner_iters=eval_inner_iters or cfg.eval_inner_iters)
    problem, learner, _, _, eval_key = setup(cfg)
    out = {**summarize(problem, evaluate_tasks(learner, state, problem, eval_key, cfg.eval_tasks),
                       inner_iters=cfg.eval_inner_iters),
           "meta_iterations": int(state.step)}
    _write_json(Path(run_dir) / "eval.json", out)
    return out
