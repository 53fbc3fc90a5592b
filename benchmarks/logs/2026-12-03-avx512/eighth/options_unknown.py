"""One-off: two XLA:CPU option names found in jaxlib's binary, tried as compile options of a
tiny program and as XLA_FLAGS in a child process (JSON lines)."""
import json, os, subprocess, sys
import jax
import jax.numpy as jnp

lowered = jax.jit(lambda x: x * 2).lower(jnp.ones(3))
for name in ("xla_cpu_disable_loop_unrolling", "xla_cpu_disable_slp_vectorizer"):
    try:
        lowered.compile(compiler_options={name: True})
        option = "accepted"
    except Exception as e:  # noqa: BLE001
        option = str(e)[:80]
    child = subprocess.run([sys.executable, "-c", "import jax; jax.numpy.ones(1) * 2"],
                           capture_output=True, text=True,
                           env={**os.environ, "XLA_FLAGS": f"--{name}=true"})
    print(json.dumps({"option": name, "compiler_options": option,
                      "XLA_FLAGS": "accepted" if child.returncode == 0 else
                      child.stderr.strip().splitlines()[-1][-80:]}))
