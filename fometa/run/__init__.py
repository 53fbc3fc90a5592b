"""The run wing: everything that turns settings into a finished run directory.

Settings, presets, problems, the compiled loop, evaluation, the run directory, plots,
training orchestration and the `fometa` command. It builds on the core (`fometa`'s pure
functions); nothing outside it imports it but the `python -m fometa` entry point.
"""

from fometa.run.evaluation import (by_steps, chunk_memory, curve_steps, evaluate_tasks,
                                   evaluator, mean_ci95, summarize)
from fometa.run.interrupt import TrainingInterrupted
from fometa.run.loop import Runner, chunk_runner, loop_runner, task_batch
from fometa.run.plots import plot_run, plot_runs
from fometa.run.presets import DEFAULT_PRESET, PRESETS, resolve
from fometa.run.problems import (DATASETS, INNER_OPTIMIZERS, Dataset, Problem, Splits, bound,
                                 classification_problem, make_learner, make_problem,
                                 register_dataset)
from fometa.run.rundir import RunDir
from fometa.run.settings import Config, check
from fometa.run.training import evaluate_run, load_run, setup, train

__all__ = [
    "Config", "DATASETS", "DEFAULT_PRESET", "Dataset", "INNER_OPTIMIZERS", "PRESETS", "Problem",
    "RunDir", "Runner", "Splits", "TrainingInterrupted", "bound", "by_steps", "check",
    "chunk_memory", "chunk_runner",
    "classification_problem", "curve_steps", "evaluate_run", "evaluate_tasks", "evaluator",
    "load_run", "loop_runner", "make_learner", "make_problem", "mean_ci95", "plot_run", "plot_runs",
    "register_dataset", "resolve", "setup", "summarize", "task_batch", "train",
]
