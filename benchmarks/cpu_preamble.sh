# Sourced by the CPU session scripts (cpu_session.sh, cpu_issue14.sh): the log folder
# ${OUT:-cpu-out}, the repository on PYTHONPATH, and the versions and load on record.
set -u
OUT=${OUT:-cpu-out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
python3 -c "import jax, torch, os; print('jax', jax.__version__, 'torch', torch.__version__, os.cpu_count(), 'cores')"
uptime
