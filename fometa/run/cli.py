"""The `fometa` command: train, eval, plot and presets; user errors as one line, exit 2.

The `train` flags are generated from the settings' declarations (`fometa.run.settings`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import jax

import fometa
from fometa.errors import ConfigError, UserError, one_line, report
from fometa.run import processes
from fometa.run.plots import OVERLAY, plot_runs
from fometa.run.presets import PRESETS, paper_result, resolve, resolve_from
from fometa.run.rundir import EVAL, RESULTS, TENSORBOARD, read_config_file
from fometa.run.settings import DECLARED, Switch, evaluation_settings, flag, flags, parse
from fometa.run.training import evaluate_run, train


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, no usage dump
        self.exit(2, f"fometa: error: {message}\n")


def _add_setting(parser: argparse.ArgumentParser, name: str, default: Any = None) -> None:
    """A flag for setting `name`, with its declared help and `default` shown; values stay
    text until `parse` (a flag left out is None: the preset's value)."""
    setting = DECLARED[name]
    shown = "none" if default is None else default
    text = setting.help + (f" [{shown}]" if name not in ("dataset", "algorithm") else "")
    if isinstance(setting.kind, Switch):
        parser.add_argument(flag(name), action=argparse.BooleanOptionalAction, default=None,
                            help=text)
    else:
        parser.add_argument(flag(name), help=text,
                            metavar=setting.metavar or setting.kind.metavar)


TRAIN_EPILOG = ("Each --dataset and --algorithm starts from its paper preset ('fometa presets' "
                "lists them, 'fometa presets NAME' shows one's settings); the values in "
                "brackets are those of plain 'fometa train' (reptile-sine). Flags override "
                "the preset.")


def _add_compile_cache(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--compile-cache", metavar="DIR",
                        help="keep compiled programs in DIR, so that a rerun, a resume or an "
                             "eval of the same settings loads them instead of compiling "
                             f"('{processes.COMPILE_CACHE_OFF}': never) [$JAX_COMPILATION_CACHE_DIR "
                             f"where set, else {processes.COMPILE_CACHE_DEFAULT}]")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fometa", description="MAML, FOMAML and Reptile in JAX.")
    parser.add_argument("--version", action="version", version=f"fometa {fometa.__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    t = sub.add_parser("train", help="meta-train, evaluate and write a run directory",
                       epilog=TRAIN_EPILOG)
    defaults = resolve().to_dict()
    for name, _ in flags():
        _add_setting(t, name, defaults[name])
    t.add_argument("--config", metavar="FILE",
                   help="start from the settings of a run's config.json instead of a preset "
                        "(to relaunch a run elsewhere, or with more --meta-iters)")
    t.add_argument("--tensorboard", action="store_true",
                   help=f"also write TensorBoard event files to RUN_DIR/{TENSORBOARD} "
                        "(needs tensorboardX)")
    t.add_argument("--run-dir", help="output folder (default: runs/<dataset>-<algorithm>-<time>); "
                   "rerunning a command with the same --run-dir resumes it from its newest checkpoint")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--no-plots", action="store_true",
                   help="no PNG plots after training (their data files are written)")
    _add_compile_cache(t)
    d = t.add_argument_group("training across processes (jax.distributed; every process "
                             "runs the same command, --devices all spans them)")
    d.add_argument("--distributed", action="store_true",
                   help="join a multi-process run; the values below default to "
                        f"${processes.ENV['coordinator']}, ${processes.ENV['num_processes']}, "
                        f"${processes.ENV['process_id']}, else to JAX's cluster detection")
    d.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address")
    d.add_argument("--num-processes", type=int, metavar="N", help="processes in all")
    d.add_argument("--process-id", type=int, metavar="I", help="this process, 0 to N-1")

    e = sub.add_parser("eval", help="re-evaluate a run's newest checkpoint")
    e.add_argument("--run-dir", required=True, help="a run directory written by 'fometa train'")
    for name in evaluation_settings():
        _add_setting(e, name, "the run's")
    e.add_argument("--json", action="store_true", help="print eval.json's content instead")
    _add_compile_cache(e)

    p = sub.add_parser("plot", help="overlay the learning curves of one or more runs")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories")
    p.add_argument("--out", help=f"image file to write (default: {OVERLAY})")

    r = sub.add_parser("presets", help="list the presets with the paper's number for each, or "
                                       "show one")
    r.add_argument("name", nargs="?", metavar="NAME", help="a preset to show in full")
    return parser


def given_settings(args: argparse.Namespace, names) -> dict[str, Any]:
    """The settings given on the command line (left-out flags are None), parsed and checked."""
    values = {name: getattr(args, name) for name in names}
    return {name: parse(name, v) if isinstance(v, str) else v for name, v in values.items()}


def _mean_ci(entry: dict[str, Any]) -> str:
    """An evaluation entry as "mean +/- ci95" (no interval from a single task)."""
    ci = f" +/- {entry['ci95']:.4f}" if entry["ci95"] is not None else ""
    return f"{entry['mean']:.4f}{ci}"


def _summary(results: dict[str, Any], inner_iters: int) -> str:
    """results.json's or eval.json's evaluation in a line."""
    ev = results["eval"]
    tasks = f"{ev['tasks']} task{'s' if ev['tasks'] != 1 else ''}"
    line = f"{ev['metric']} after {inner_iters} inner steps on {tasks}: {_mean_ci(ev)}"
    if "eval_transductive" in results:
        line += f" (transductive {_mean_ci(results['eval_transductive'])})"
    return line


def _train(args: argparse.Namespace) -> int:
    processes.check_x64()
    processes.compile_cache(args.compile_cache)
    if (args.distributed or args.coordinator or args.num_processes is not None
            or args.process_id is not None):  # any of them: a run across processes
        processes.start(args.coordinator, args.num_processes, args.process_id)
    settings = given_settings(args, [name for name, _ in flags()])
    if args.config:
        for name in ("dataset", "preset"):
            if settings.pop(name) is not None:
                raise ConfigError(f"--config starts from a saved run's settings; {flag(name)} "
                                  "cannot change them (start from the preset instead)")
        cfg = resolve_from(read_config_file(Path(args.config)), **settings)
    else:
        cfg = resolve(settings.pop("dataset"), settings.pop("preset"), **settings)
    processes.split_cpu(cfg.devices)
    processes.check_backend()
    run_dir = args.run_dir or f"runs/{cfg.dataset}-{cfg.algorithm}-{time.strftime('%Y%m%d-%H%M%S')}"
    if jax.process_index() == 0:
        print(f"run dir {Path(run_dir).absolute()}", flush=True)
    results = train(cfg, run_dir, progress=not args.no_progress, tensorboard=args.tensorboard,
                    plots=not args.no_plots)
    if jax.process_index() != 0:  # process 0 reports for all
        return 0
    if results.get("already_complete"):
        print(f"run dir {run_dir} already holds this run, complete at meta-iteration "
              f"{results['meta_iterations']}; its {RESULTS}:")
    elif results.get("resumed_from"):
        print(f"resumed at meta-iteration {results['resumed_from']}")
    print(f"{_summary(results, cfg.eval_inner_iters)}  [{results['wall_seconds']:.1f} s; "
          f"run dir {run_dir}]")
    return 0


def _eval(args: argparse.Namespace) -> int:
    processes.check_x64()
    processes.compile_cache(args.compile_cache)
    processes.check_backend()
    out = evaluate_run(args.run_dir, **given_settings(args, evaluation_settings()))
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{_summary(out, out['config']['eval_inner_iters'])}  [checkpoint at meta-iteration "
          f"{out['meta_iterations']}; {Path(args.run_dir) / EVAL}]")
    return 0


def _plot(args: argparse.Namespace) -> int:
    print(plot_runs(args.run_dirs, args.out))
    return 0


def _presets(args: argparse.Namespace) -> int:
    if args.name is None:
        for name, preset in PRESETS.items():
            s = preset.settings
            shape = f"{s['ways']}-way {s['shots']}-shot" if s.get("ways") else ""
            mark = " *" if preset.differences else ""
            print(f"{name:28s} {shape:15s} paper: {paper_result(preset)}{mark}")
        print("* differs from its source on purpose: 'fometa presets NAME' says how")
        return 0
    if args.name not in PRESETS:
        raise ConfigError(f"unknown preset {args.name!r}; expected one of {', '.join(PRESETS)}")
    preset = PRESETS[args.name]
    print(f"{args.name}\nsource: {preset.source}\npaper: {paper_result(preset)}")
    if preset.differences:
        print(f"differs on purpose: {preset.differences}")
    print("settings (flags; those the preset sets are marked *):")
    for name, value in resolve(preset=args.name).to_dict().items():
        mark = "*" if name in preset.settings else " "
        print(f"  {mark} {flag(name):22s} {value}")
    return 0


COMMANDS = {"train": _train, "eval": _eval, "plot": _plot, "presets": _presets}
# The commands' path flags, refused empty (--compile-cache has its own check).
PATH_ARGUMENTS = ("run_dir", "out", "config")


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"fometa: warning: {one_line(message)}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # bare `fometa`
        parser.print_help()
        return 2
    try:
        for name in PATH_ARGUMENTS:  # "" would fall back to a default path, or to "."
            if getattr(args, name, None) is not None and not getattr(args, name).strip():
                raise ConfigError(f"{flag(name)} {getattr(args, name)!r} is empty: name a "
                                  "path, or leave the flag out")
        with warnings.catch_warnings():  # restores the caller's warning display on exit
            warnings.showwarning = _one_line_warning
            return COMMANDS[args.command](args)
    except BrokenPipeError:  # the reader went away (fometa presets | head): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (UserError, KeyboardInterrupt) as e:  # TrainingInterrupted says how to resume
        return report("fometa", e)


def console() -> None:
    """The `fometa` command (entered through `fometa.__main__.console`, which catches Ctrl-C
    while this module loads): `main`, then exit with its status. After a user error (2),
    already said in one line, it leaves without the interpreter's shutdown, where orbax's
    asyncio threads can print "Event loop is closed" tracebacks after that line (checkpoints
    are closed by then)."""
    code = main()
    if code == 2:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(2)
    sys.exit(code)


if __name__ == "__main__":
    console()
