"""One-off: does compiling fewer small fusions shorten a second-order training loop's compile?

    python small_fusions.py PRESET VARIANTS ROUNDS   (VARIANTS e.g. base,nofinite,flat,nofinite+flat)

Builds the preset's training loop as `fometa train` does (random images of the dataset's
shapes) with `fometa.run.problems.meta_learner` wrapped: `nofinite` turns off check_finite
(one is-finite reduction per state leaf), `flat` wraps the outer optimizer in
`optax.flatten` (one update over all parameters instead of one per leaf). Times tracing with
lowering, and XLA's compile, and counts the compiled program's fusions; variants alternated.
"""
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # benchmarks/
import optax  # noqa: E402

import fometa.run.problems as problems  # noqa: E402
from fometa.run import resolve, setup  # noqa: E402
from fometa.run.training import Chunks, initial_state  # noqa: E402
from fometa.sharding import task_mesh  # noqa: E402
from preset_speed import synthetic_problem  # noqa: E402

original = problems.meta_learner
preset, variants, rounds = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])


def wrapped(variant):
    def meta_learner(algorithm, loss_fn, inner, outer, **kw):
        if "nofinite" in variant:
            kw["check_finite"] = False
        if "flat" in variant:
            outer = optax.flatten(outer)
        return original(algorithm, loss_fn, inner, outer, **kw)
    return meta_learner


cfg = resolve(preset=preset)
problem = synthetic_problem(cfg, None)
for _ in range(rounds):
    for variant in variants:
        problems.meta_learner = wrapped(variant)
        run = setup(cfg, problem)
        state = initial_state(cfg, run)
        chunks = Chunks(cfg, run, run.train_key, task_mesh())
        t0 = time.perf_counter()
        lowered = chunks._runner.lower(state, chunks._scalar(0), chunks._scalar(1))
        t1 = time.perf_counter()
        compiled = lowered.compile()
        t2 = time.perf_counter()
        fusions = len(re.findall(r" fusion\(", compiled.as_text()))
        print(f"{preset} {variant:14s} trace+lower {t1 - t0:4.1f} s  XLA {t2 - t1:4.1f} s  "
              f"total {t2 - t0:4.1f} s  fusions {fusions}", flush=True)
