"""Milliseconds per meta-step of the paper's few-shot workloads, optionally against torch.func.

    python benchmarks/speed.py --workload omniglot-5w1s|miniimagenet-5w1s \\
        --algorithm maml|fomaml|reptile|meta-sgd|anil|imaml|maml++ --iters N --json
        [--torch] [--threads N] [--unroll K] [--remat] [--adapt] [--tasks T] [--devices N]
        [--tasks-at-once N] [--as-train]

One meta-step: 5 tasks, each 5-way with 5 inner SGD steps (lr 0.1) on batches of 10 images
(28x28x1 with `fometa.OmniglotCNN`, or 84x84x3 with `fometa.MiniImageNetCNN`; batch norm
with batch statistics), 5 query images per task for MAML/FOMAML; then the outer update
(Adam 1e-3 for MAML/FOMAML, Reptile's interpolation `fometa.reptile_outer(0.1)`).

fometa side: `jax.jit(fometa.meta_learner(...).step)` on a `fometa.Task` with a leading task
axis of 5 (support leaves [5 tasks, 5 steps, 10, ...]; `--tasks T` for another count).
`--devices N` splits the CPU into N JAX devices (`jax_num_cpu_devices`) and shards the task
axis over them, as `fometa train --devices N` does (T must be a multiple of N), and also
times the same step on one of those devices, alternated with the others in the same run
(`one_device_ms_per_meta_step`); torch.func keeps its one process and its intra-op threads.
`--tasks-at-once N` vmaps N tasks at a time (1: each unbatched), the groups in turn
(`meta_learner(tasks_at_once=N)`,
`fometa train --tasks-at-once`), and also times all tasks at once (the vmap of every task)
alternated with it (`all_at_once_ms_per_meta_step`). `--as-train` takes remat and tasks at
once as `fometa train` picks them when unset (`fometa.run.problems.uses_remat`,
`tasks_at_once`) for the workload (its dataset, algorithm, tasks, inner steps, 10-image batches
of 5 ways x 2 shots) on this machine: the step a user of the command runs by default.

--torch: the same workload written the PyTorch way, in the same process: the same network
as an `nn.Module` (NCHW; BatchNorm2d in training mode with `track_running_stats=False`),
`torch.func.functional_call`, `torch.func.grad`, `torch.func.vmap` over the tasks and a
Python loop over the inner steps; MAML differentiates through the inner loop (grad of grad),
FOMAML takes the query gradient at the adapted parameters (computed without an outer
transform, i.e. detached), Reptile the parameter difference; `torch.optim.Adam` (MAML,
FOMAML) or the in-place interpolation (Reptile) for the outer step.

The data are random tensors prepared once, before timing (sampling episodes is not what is
timed; timing does not depend on the pixel values). Each timed meta-step is one call, waited
for (`block_until_ready`). After warm-up, fometa and torch alternate in blocks of `--block`
timed steps, so that load from other processes hits both alike; each block starts with one
untimed step, because the library that ran before leaves worker threads spinning for a
while (OpenMP's and Eigen's pools both do), which slows the other's next step (FOMAML:
24.3 ms alternating step by step, 22.1 ms in blocks, in two runs a minute apart).
`ms_per_meta_step` is the median over `--iters` steps.
The last line printed (with --json) is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Callable

WORKLOADS = {
    # name: (image shape HWC, network, `fometa train --dataset` of those images)
    "omniglot-5w1s": ((28, 28, 1), "omniglot", "omniglot"),
    "miniimagenet-5w1s": ((84, 84, 3), "miniimagenet", "mini-imagenet"),
}
TASKS, WAYS, INNER_STEPS, INNER_BATCH, QUERIES, INNER_LR = 5, 5, 5, 10, 5, 0.1
# --algorithm: (the registered algorithm, what differs from it, meta_learner's options);
# torch.func versions exist for the paper's three.
VARIANTS = {
    "maml": ("maml", "second order", {}),
    "fomaml": ("fomaml", "first order", {}),
    "reptile": ("reptile", "parameter difference", {}),
    "meta-sgd": ("meta-sgd", "MAML with per-parameter learned inner rates", {}),
    "anil": ("anil", "MAML adapting the output layer only", {"inner_trainable": "head"}),
    "imaml": ("imaml", "implicit gradient, lam 2, 5 CG steps",
              {"options": {"lam": 2.0, "cg_steps": 5}}),
    "maml++": ("maml", "MAML with per-layer per-step rates, per-step batch norm and the "
               "multi-step loss", {"learn_inner_lr": "per-layer-step", "inner_steps": INNER_STEPS,
                                   "multi_step_iters": 1000, "per_step": "norms"}),
    # MAML++'s options one at a time (benchmarks/algorithms.py).
    "maml+msl": ("maml", "MAML with the multi-step loss", {"multi_step_iters": 1000}),
    "maml+bnwb": ("maml", "MAML with per-step batch-norm weights and biases",
                  {"inner_steps": INNER_STEPS, "per_step": "norms"}),
    "maml+lslr": ("maml", "MAML with per-layer per-step rates",
                  {"learn_inner_lr": "per-layer-step", "inner_steps": INNER_STEPS}),
}
TORCH_VARIANTS = ("maml", "fomaml", "reptile")
OUTER_LR, REPTILE_EPS = 1e-3, 0.1


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="omniglot-5w1s")
    parser.add_argument("--algorithm", choices=tuple(VARIANTS), default="maml",
                        help="meta-step of: " + "; ".join(f"{k}: {v[1]}" for k, v in
                                                          VARIANTS.items()))
    parser.add_argument("--adapt", action="store_true",
                        help="time adaptation instead (the inner loop of the 5 tasks, vmapped: "
                             "test time), not the meta-step")
    parser.add_argument("--iters", type=int, default=20, help="timed meta-steps (median)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed meta-steps after compiling")
    parser.add_argument("--block", type=int, default=5,
                        help="timed meta-steps per block when alternating with --torch")
    parser.add_argument("--json", action="store_true", help="print a JSON object last")
    parser.add_argument("--torch", action="store_true", help="also time the torch.func version")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for torch (torch.set_num_threads) and XLA:CPU; "
                             "default: the machine's cores")
    parser.add_argument("--unroll", type=int, default=None,
                        help="lax.scan unroll of the inner loop (default 1, meta_learner's default)")
    parser.add_argument("--conv", choices=("auto", "patch", "xla"), default="auto")
    parser.add_argument("--inner-steps", type=int, default=INNER_STEPS,
                        help=f"inner steps per task (default {INNER_STEPS})")
    parser.add_argument("--tasks", type=int, default=TASKS,
                        help=f"tasks per meta-step (default {TASKS})")
    parser.add_argument("--devices", type=int, default=1,
                        help="CPU devices to shard the tasks over (jax_num_cpu_devices)")
    parser.add_argument("--tasks-at-once", type=int, metavar="N",
                        help="tasks vmapped at a time (1: each unbatched), the groups in turn "
                             "(default: all)")
    parser.add_argument("--as-train", action="store_true",
                        help="remat and tasks at once as `fometa train` picks them for this "
                             "workload on this machine (--remat, --tasks-at-once N still win)")
    parser.add_argument("--remat", action="store_true",
                        help="rematerialise the inner steps (meta_learner(remat=True)); "
                             "MAML's fastest setting on the CPU")
    return parser.parse_args(argv)


def make_data(workload: str, seed: int = 0, steps: int = INNER_STEPS, tasks: int = TASKS):
    """Random numpy data: support x [T, S, B, H, W, C], y [T, S, B]; query x [T, Q, ...], y [T, Q]."""
    import numpy as np

    shape = WORKLOADS[workload][0]
    rng = np.random.default_rng(seed)
    return {"sx": rng.standard_normal((tasks, steps, INNER_BATCH, *shape), np.float32),
            "sy": rng.integers(0, WAYS, (tasks, steps, INNER_BATCH)).astype(np.int32),
            "qx": rng.standard_normal((tasks, QUERIES, *shape), np.float32),
            "qy": rng.integers(0, WAYS, (tasks, QUERIES)).astype(np.int32)}


# ----------------------------------------------------------------------------- fometa


def fometa_step(workload: str, algorithm: str, data, unroll: int, conv: str,
                remat: bool = False, adapt: bool = False, devices: int = 1,
                tasks_at_once: int | None = None):
    """(call, compile_s, params): `call()` runs one jitted meta-step (with `adapt`: the
    adaptation of the tasks) and waits for it; with `devices` > 1 the tasks are sharded
    over the first `devices` devices and the state replicated."""
    import functools

    import jax
    import jax.numpy as jnp

    import fometa
    from fometa import sharding
    from fometa.tasks.classification import cross_entropy

    net = WORKLOADS[workload][1]
    model_cls = fometa.OmniglotCNN if net == "omniglot" else fometa.MiniImageNetCNN
    model = model_cls(WAYS, conv=conv)
    loss_fn = functools.partial(cross_entropy, model.apply)
    outer = fometa.reptile_outer(REPTILE_EPS) if algorithm == "reptile" else None
    if outer is None:
        import optax
        outer = optax.adam(OUTER_LR)
    name, _, options = VARIANTS[algorithm]
    if "inner_steps" in options:  # per-step rates: one for each of the workload's steps
        options = dict(options, inner_steps=data["sx"].shape[1])
    if options.get("per_step") == "norms":
        options = dict(options, per_step=fometa.partition.by_path(lambda path: "['norm" in path))
    if options.get("inner_trainable") == "head":
        options = dict(options, inner_trainable=fometa.partition.by_path(
            lambda path: "['logits']" in path))
    learner = fometa.meta_learner(name, loss_fn, INNER_LR, outer, unroll=unroll,
                                  remat=remat, tasks_at_once=tasks_at_once, **options)
    tasks = fometa.Task({"x": jnp.asarray(data["sx"]), "y": jnp.asarray(data["sy"])},
                        {"x": jnp.asarray(data["qx"]), "y": jnp.asarray(data["qy"])})
    params = model.init(jax.random.PRNGKey(0), tasks.query["x"][0])
    state = learner.init(params)
    if devices > 1:
        mesh = sharding.task_mesh(sharding.select_devices(str(devices)))
        sharding.check_divisible(tasks.query["y"].shape[0], mesh, "--tasks")
        tasks = jax.device_put(tasks, sharding.task_sharded(mesh))
        state = sharding.replicate(state, mesh)
    t0 = time.perf_counter()
    if adapt:
        run = jax.jit(jax.vmap(learner.adapt, in_axes=(None, 0))).lower(
            state, tasks.support).compile()
        compile_s = time.perf_counter() - t0

        def call():
            jax.block_until_ready(run(state, tasks.support))

        return call, compile_s, params
    step = jax.jit(learner.step).lower(state, tasks).compile()
    compile_s = time.perf_counter() - t0
    box = [state]

    def call():
        new_state, metrics = step(box[0], tasks)
        jax.block_until_ready((new_state, metrics))
        box[0] = new_state

    return call, compile_s, params


# ----------------------------------------------------------------------------- torch


def torch_step(workload: str, algorithm: str, data, jax_params=None):
    """(call, setup_s): one meta-step written with torch.func; `jax_params` seeds the weights."""
    import numpy as np
    import torch
    from torch import nn
    from torch.func import functional_call, grad, vmap
    import torch.nn.functional as F

    net = WORKLOADS[workload][1]
    cin = WORKLOADS[workload][0][2]

    class Block(nn.Module):
        def __init__(self, cin, cout, omniglot):
            super().__init__()
            self.omniglot = omniglot
            self.conv = nn.Conv2d(cin, cout, 3, stride=2 if omniglot else 1, padding=1)
            self.norm = nn.BatchNorm2d(cout, eps=1e-3, track_running_stats=False)

        def forward(self, x):
            x = self.norm(self.conv(x))
            if not self.omniglot:
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)
            return F.relu(x)

    class Net(nn.Module):
        def __init__(self, omniglot):
            super().__init__()
            filters = 64 if omniglot else 32
            chans = [cin] + [filters] * 4
            self.blocks = nn.Sequential(*[Block(chans[i], chans[i + 1], omniglot)
                                          for i in range(4)])
            self.logits = nn.Linear(filters * (2 * 2 if omniglot else 6 * 6), WAYS)

        def forward(self, x):
            return self.logits(self.blocks(x).flatten(1))

    t0 = time.perf_counter()
    model = Net(net == "omniglot").train()
    if jax_params is not None:  # same initial weights as fometa (layouts converted)
        p = jax_params["params"]
        with torch.no_grad():
            for i, block in enumerate(model.blocks):
                block.conv.weight.copy_(torch.from_numpy(
                    np.asarray(p[f"conv{i}"]["kernel"]).transpose(3, 2, 0, 1).copy()))
                block.conv.bias.copy_(torch.from_numpy(np.array(p[f"conv{i}"]["bias"])))
                block.norm.weight.copy_(torch.from_numpy(np.array(p[f"norm{i}"]["scale"])))
                block.norm.bias.copy_(torch.from_numpy(np.array(p[f"norm{i}"]["bias"])))
            k = np.asarray(p["logits"]["kernel"])  # [H*W*C (NHWC flatten), ways]
            f = model.logits.in_features
            side = int(round((f // model.blocks[0].conv.out_channels) ** 0.5))
            c = model.blocks[0].conv.out_channels
            k = k.reshape(side, side, c, WAYS).transpose(2, 0, 1, 3).reshape(f, WAYS)
            model.logits.weight.copy_(torch.from_numpy(k.T.copy()))
            model.logits.bias.copy_(torch.from_numpy(np.array(p["logits"]["bias"])))
    names = [n for n, _ in model.named_parameters()]
    tparams = dict(model.named_parameters())
    opt = torch.optim.Adam(tparams.values(), lr=OUTER_LR) if algorithm != "reptile" else None

    def nchw(x):
        return torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, -3)))

    sx, qx = nchw(data["sx"]), nchw(data["qx"])
    sy, qy = torch.from_numpy(data["sy"]).long(), torch.from_numpy(data["qy"]).long()

    def loss(p, x, y):
        return F.cross_entropy(functional_call(model, p, (x,)), y)

    def adapt(p, xs, ys):
        for i in range(xs.shape[0]):  # a plain Python loop over the inner steps
            g = grad(loss)(p, xs[i], ys[i])
            p = {k: p[k] - INNER_LR * g[k] for k in names}
        return p

    if algorithm == "maml":
        def task_grad(p, xs, ys, qxi, qyi):
            return grad(lambda p0: loss(adapt(p0, xs, ys), qxi, qyi))(p)
    elif algorithm == "fomaml":
        def task_grad(p, xs, ys, qxi, qyi):
            adapted = {k: v.detach() for k, v in adapt(p, xs, ys).items()}
            return grad(loss)(adapted, qxi, qyi)
    else:
        def task_grad(p, xs, ys, qxi, qyi):
            adapted = adapt(p, xs, ys)
            return {k: p[k] - adapted[k] for k in names}

    batched = vmap(task_grad, in_dims=(None, 0, 0, 0, 0))

    def call():
        p = {k: v.detach() for k, v in tparams.items()}
        grads = batched(p, sx, sy, qx, qy)
        with torch.no_grad():
            if opt is None:  # Reptile: phi <- phi - eps * mean(phi - W)
                for k in names:
                    tparams[k].sub_(REPTILE_EPS * grads[k].mean(0))
            else:
                for k in names:
                    tparams[k].grad = grads[k].mean(0)
                opt.step()

    return call, time.perf_counter() - t0


# ----------------------------------------------------------------------------- main


def time_alternately(calls: dict[str, Callable[[], None]], iters: int, block: int
                     ) -> dict[str, list[float]]:
    """Milliseconds of `iters` timed calls of each of `calls`, taken in blocks of `block`,
    the calls in turn, so that machine noise hits all alike; each block after one untimed
    call (the library that ran before may leave worker threads spinning)."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    while any(len(ts) < iters for ts in times.values()):
        for name, c in calls.items():
            c()
            for _ in range(min(block, iters - len(times[name]))):
                t0 = time.perf_counter()
                c()
                times[name].append((time.perf_counter() - t0) * 1e3)
    return times


def train_defaults(args: argparse.Namespace, platform: str) -> tuple[bool, int | None]:
    """(remat, tasks_at_once) as `fometa train` resolves them (`fometa.run.problems`) for the
    workload: its dataset, algorithm, tasks, inner steps and batch, on `args.devices`
    devices, its tasks in parallel (as this script computes them, Reptile's too, which
    `fometa train` runs in sequence by default); --remat and --tasks-at-once where given."""
    from fometa.run import presets, problems

    cfg = presets.resolve(WORKLOADS[args.workload][2], algorithm=VARIANTS[args.algorithm][0],
                          ways=WAYS, train_shots=INNER_BATCH // WAYS, inner_batch=INNER_BATCH,
                          inner_iters=args.inner_steps, meta_batch=args.tasks,
                          task_order="parallel", devices=str(args.devices),
                          remat=True if args.remat else None,
                          tasks_at_once=args.tasks_at_once)
    return problems.uses_remat(cfg, platform), problems.tasks_at_once(cfg, platform)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads is not None:
        flags = os.environ.get("XLA_FLAGS", "")
        if args.threads == 1:
            flags += " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        os.environ["XLA_FLAGS"] = flags.strip()
    import jax

    from fometa.run import processes

    processes.split_cpu(str(args.devices))  # as fometa train does, before JAX starts
    cores = os.cpu_count()
    threads = args.threads or cores
    unroll = 1 if args.unroll is None else args.unroll
    data = make_data(args.workload, steps=args.inner_steps, tasks=args.tasks)
    if args.tasks_at_once is not None and (args.tasks_at_once < 1 or args.adapt
                                           or args.devices > 1):
        sys.exit("speed.py: error: --tasks-at-once N (N >= 1) groups the meta-step's tasks on "
                 "one device: not with --adapt or --devices")
    if args.torch and (args.algorithm not in TORCH_VARIANTS or args.adapt):
        sys.exit(f"speed.py: error: --torch times the meta-steps of {', '.join(TORCH_VARIANTS)}")
    if args.as_train:
        if args.adapt:
            sys.exit("speed.py: error: --as-train picks a training step's settings: "
                     "not with --adapt")
        args.remat, args.tasks_at_once = train_defaults(args, jax.default_backend())
    call, compile_s, params = fometa_step(args.workload, args.algorithm, data, unroll, args.conv,
                                          args.remat, args.adapt, args.devices, args.tasks_at_once)
    calls = {"fometa": call}
    if args.tasks_at_once is not None:  # every task at once, alternated in the same run
        calls["all_at_once"] = fometa_step(args.workload, args.algorithm, data, unroll,
                                           args.conv, args.remat)[0]
    if args.devices > 1:  # the same step on one of the devices, alternated in the same run
        calls["one_device"] = fometa_step(args.workload, args.algorithm, data, unroll, args.conv,
                                          args.remat, args.adapt)[0]
    setup = {}
    if args.torch:
        import torch

        torch.set_num_threads(threads)
        tcall, setup["torch"] = torch_step(args.workload, args.algorithm, data, params)
        calls["torch"] = tcall
    for _ in range(max(args.warmup, 1)):
        for c in calls.values():
            c()
    times = time_alternately(calls, args.iters, args.block)
    dev = jax.devices()[0]
    out = {"workload": args.workload, "algorithm": args.algorithm, "adapt": args.adapt,
           "inner_steps": args.inner_steps,
           "ms_per_meta_step": statistics.median(times["fometa"]),
           "device": f"{dev.platform}:{dev.device_kind}", "cpu_cores": cores,
           "processor": platform.processor() or platform.machine(),
           "threads": threads, "compile_s": compile_s, "unroll": unroll,
           "iters": args.iters, "block": args.block, "conv": args.conv, "remat": args.remat,
           "tasks": args.tasks, "devices": args.devices, "tasks_at_once": args.tasks_at_once,
           "as_train": args.as_train,
           "jax": jax.__version__,
           "data": "random tensors prepared once; sampling not timed"}
    if args.tasks_at_once is not None:
        every = statistics.median(times["all_at_once"])
        out.update({"all_at_once_ms_per_meta_step": every,
                    "tasks_at_once_speedup": every / out["ms_per_meta_step"]})
    if args.devices > 1:
        one = statistics.median(times["one_device"])
        out.update({"one_device_ms_per_meta_step": one,
                    "devices_speedup": one / out["ms_per_meta_step"]})
    if args.torch:
        import torch

        t = statistics.median(times["torch"])
        out.update({"torch_ms_per_meta_step": t, "ratio": t / out["ms_per_meta_step"],
                    "torch": torch.__version__, "torch_threads": torch.get_num_threads()})
    who = "fometa" if args.devices == 1 else f"fometa on {args.devices} devices"
    line = (f"{args.workload} {args.algorithm}{' adaptation' if args.adapt else ''}: {who} "
            f"{out['ms_per_meta_step']:.2f} ms "
            f"(compile {compile_s:.1f} s, unroll {unroll}{', remat' if args.remat else ''}"
            f"{', as fometa train' if args.as_train else ''}"
            f"{'' if args.tasks_at_once is None else f', {args.tasks_at_once} task(s) at once'})")
    if args.tasks_at_once is not None:
        line += (f", all tasks at once {out['all_at_once_ms_per_meta_step']:.2f} ms "
                 f"({out['tasks_at_once_speedup']:.2f}x)")
    if args.devices > 1:
        line += (f", on one device {out['one_device_ms_per_meta_step']:.2f} ms "
                 f"({out['devices_speedup']:.2f}x)")
    if args.torch:
        line += f", torch.func {out['torch_ms_per_meta_step']:.2f} ms, ratio {out['ratio']:.2f}x"
        if args.devices > 1:
            one = out["torch_ms_per_meta_step"] / out["one_device_ms_per_meta_step"]
            line += f" ({one:.2f}x on one device)"
    print(line, file=sys.stderr if args.json else sys.stdout, flush=True)
    if args.json:
        print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()
