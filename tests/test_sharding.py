"""`--devices`: task batches sharded over a device mesh give the results of one device.

Two CPU devices need `XLA_FLAGS=--xla_force_host_platform_device_count=2` before JAX
initialises, so the two-device checks run in a subprocess; this process keeps one device.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fometa.run.cli import main
from fometa.errors import ConfigError

# One pytest-xdist worker runs this module: its module-scoped fixtures are built once.
pytestmark = pytest.mark.xdist_group("sharding")


SCRIPT = textwrap.dedent(r'''
    import dataclasses, json, sys
    import jax, numpy as np
    from jax._src import dispatch
    from fometa.errors import ConfigError
    from fometa.run import chunk_runner, evaluate_tasks, load_run, resolve, setup, train
    from fometa.sharding import TASKS, replicate, task_mesh

    assert len(jax.devices()) == 2, jax.devices()
    import fometa.run.training
    fometa.run.training.record_figures = lambda *a, **k: None  # its curves compile evaluations of their own
    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, secs, fun_name="", **kw: compiles.append(fun_name)
        if event == dispatch.BACKEND_COMPILE_EVENT else None)

    def flat(tree):
        return np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(tree)]).tolist()

    out = {}
    cfg = resolve("sine", meta_iters=60, meta_batch=4, log_every=10, eval_every=20, eval_tasks=20)
    for d in ("1", "2"):
        del compiles[:]
        run_dir = sys.argv[1] + "/run" + d
        results = train(dataclasses.replace(cfg, devices=d), run_dir, progress=False)
        lines = [json.loads(l) for l in open(run_dir + "/metrics.jsonl")]
        _, state = load_run(run_dir)
        out[d] = {"params": flat(state.params), "train": [l for l in lines if l["kind"] == "train"],
                  "eval": results["eval"]["mean"], "devices": results["devices"],
                  "config_devices": json.load(open(run_dir + "/config.json"))["devices"],
                  "compiles": {n: sum(n in c for c in compiles) for n in ("meta_chunk", "eval_chunk")}}

    # Evaluation of one state: the same per-task metrics on one and two devices.
    problem, learner, init_key, train_key, eval_key = setup(cfg)
    _, state = load_run(sys.argv[1] + "/run2")
    out["eval_same_state"] = [evaluate_tasks(learner, state, problem, eval_key, 20,
                                             mesh=task_mesh(jax.devices()[:d]))["mse"].tolist()
                              for d in (1, 2)]

    # The task batch that `learner.step` gets inside the compiled chunk, and recompilation.
    mesh = task_mesh(jax.devices())
    seen = []
    def step(state, tasks):
        for leaf in jax.tree_util.tree_leaves(tasks):
            jax.debug.inspect_array_sharding(leaf, callback=seen.append)
        return learner.step(state, tasks)
    run = chunk_runner(learner._replace(step=step), problem, 4, train_key, mesh)
    state = replicate(learner.init(problem.init_params(init_key)), mesh)
    for start in (0, 3, 6):
        state, _ = run(state, replicate(np.arange(start, start + 3, dtype=np.int32), mesh))
    out["task_shardings"] = [{"axis0": s.spec[0] if len(s.spec) else None, "devices": len(s.device_set),
                              "shards": len({str(i) for i in s.devices_indices_map((4, 1)).values()})}
                             for s in seen]
    out["state_devices"] = sorted({len(x.sharding.device_set) for x in jax.tree_util.tree_leaves(state)})
    out["state_replicated"] = all(x.sharding.is_fully_replicated for x in jax.tree_util.tree_leaves(state))
    out["jit_cache_size"] = run.fn._cache_size()
    hlo = run.lower(state, replicate(np.arange(3, dtype=np.int32), mesh)).as_text()
    out["hlo_constraint"] = ('["tasks"=2]' in hlo and '[{"tasks"}' in hlo  # Shardy
                             or "devices=[2" in hlo)  # GSPMD

    errors = []
    for kw in ({"devices": "4"}, {"devices": "2", "meta_batch": 3}, {"devices": "all", "meta_batch": 5}):
        try:
            train(dataclasses.replace(cfg, **kw), sys.argv[1] + "/bad", progress=False)
            errors.append(None)
        except ConfigError as e:
            errors.append(str(e))
    out["errors"] = errors
    import os
    out["bad_dir_written"] = os.path.exists(sys.argv[1] + "/bad")
    print("RESULT " + json.dumps(out))
''')


@pytest.fixture(scope="module")
def two_devices(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sharding")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def test_two_devices_train_like_one(two_devices):
    one, two = two_devices["1"], two_devices["2"]
    assert len(one["devices"]) == 1 and len(two["devices"]) == 2
    assert one["config_devices"] == one["devices"] and two["config_devices"] == two["devices"]
    # Only the order of the cross-device sum of the task mean differs: float rounding.
    np.testing.assert_allclose(two["params"], one["params"], rtol=1e-5, atol=1e-6)
    assert [l["iteration"] for l in two["train"]] == [l["iteration"] for l in one["train"]]
    for a, b in zip(one["train"], two["train"]):
        for k in ("query_loss", "support_loss"):
            np.testing.assert_allclose(b[k], a[k], rtol=1e-5)
    # 32 inner steps on some tasks amplify last-bit differences of the params (a 1e-7
    # relative perturbation moves one task's mse by ~1e-3), so the whole-run eval
    # agrees less tightly; the same state evaluates alike on 1 and 2 devices.
    np.testing.assert_allclose(two["eval"], one["eval"], rtol=2e-3)
    a, b = two_devices["eval_same_state"]
    np.testing.assert_allclose(b, a, rtol=1e-5)


def test_task_batch_is_sharded_and_state_replicated(two_devices):
    shardings = two_devices["task_shardings"]
    assert shardings, "learner.step never saw its task batch"
    for s in shardings:
        assert s["devices"] == 2 and s["shards"] == 2 and s["axis0"] == "tasks"
    assert two_devices["hlo_constraint"]
    assert two_devices["state_devices"] == [2] and two_devices["state_replicated"]


def test_no_recompilation_after_the_first_chunk(two_devices):
    # Six chunks of 10 iterations, two periodic evaluations and the final one: one compile
    # of the training loop and one of the evaluation.
    for d in ("1", "2"):
        assert two_devices[d]["compiles"] == {"meta_chunk": 1, "eval_chunk": 1}
    # Plain jit dispatch of three chunks in a row: the state's output sharding is its input's.
    assert two_devices["jit_cache_size"] == 1


def test_device_errors(two_devices):
    too_many, not_divisible, not_divisible_all = two_devices["errors"]
    assert too_many == "--devices 4 but only 2 devices are available"
    for msg, (batch, n) in ((not_divisible, (3, 2)), (not_divisible_all, (5, 2))):
        assert msg is not None and "\n" not in msg
        assert f"meta_batch {batch}" in msg and f"{n} devices" in msg
    assert not two_devices["bad_dir_written"]


def test_too_many_devices_is_one_line_exit_2(capsys, tmp_path):
    assert main(["train", "--devices", "9", "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fometa: error: --devices 9 but only ") and "\n" not in err
    assert not (tmp_path / "r").exists()


def test_select_devices_on_one_device():
    import jax

    from fometa.sharding import check_divisible, mesh_size, select_devices, task_mesh

    assert select_devices("all") == jax.devices() and len(select_devices("1")) == 1
    mesh = task_mesh(select_devices("1"))
    assert mesh_size(mesh) == 1 and mesh.axis_names == ("tasks",)
    check_divisible(7, mesh)
    with pytest.raises(ConfigError, match=r"--devices \d+ but only"):
        select_devices(str(len(jax.devices()) + 1))
