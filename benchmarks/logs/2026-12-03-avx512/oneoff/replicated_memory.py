"""One-off: peak RSS before and after fometa.sharding.replicate_data puts a 1 GB uint8 array on argv[1] CPU devices."""
import sys, resource, jax, numpy as np
n = int(sys.argv[1])
if n > 1: jax.config.update("jax_num_cpu_devices", n)
from fometa.sharding import task_mesh, replicate_data
host = np.ones((1000, 1000, 1000), np.uint8)  # 1 GB
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
arr = replicate_data({"x": host}, task_mesh(jax.devices()[:n]))
jax.block_until_ready(arr)
print(n, "devices: peak RSS GB before", round(base, 2), "after", round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2))
