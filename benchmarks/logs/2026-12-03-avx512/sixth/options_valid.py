"""One-off: which XLA:CPU option names this jaxlib accepts as compile options (a tiny
program compiled with each; JSON lines)."""
import json
import jax
import jax.numpy as jnp

lowered = jax.jit(lambda x: x * 2).lower(jnp.ones(3))
for name, value in [("xla_cpu_optimize_for_size", True), ("xla_cpu_disable_tiled_emitter", True),
                    ("xla_cpu_use_multi_output_fusion", False),
                    ("xla_cpu_small_while_loop_byte_threshold", 0),
                    ("xla_cpu_max_isa", "AVX2"), ("xla_cpu_emitter_verification_level", 0),
                    ("xla_cpu_use_xnnpack", False), ("xla_cpu_experimental_ynn_fusion_type", ""),
                    ("xla_cpu_copy_insertion_use_region_analysis", False)]:
    try:
        lowered.compile(compiler_options={name: value})
        print(json.dumps({"option": name, "accepted": True}))
    except Exception as e:  # noqa: BLE001
        print(json.dumps({"option": name, "accepted": False, "error": str(e)[:120]}))
