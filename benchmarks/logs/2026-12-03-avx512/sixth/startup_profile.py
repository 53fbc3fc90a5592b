"""One-off: the cProfile files of two runs of `python -m cProfile -o FILE -m fometa train
--preset maml-omniglot-5w1s --meta-iters 2 --eval-tasks 2 --run-dir R --no-progress
--no-plots --compile-cache off` (real Omniglot, run from /tmp), read back: c78f4d7, and a
first version of the change (one jit around the initialisation and the learner's state
together). The first run also built the Omniglot dataset cache (its `setup`)."""
import io
import pstats

for name, path in [("c78f4d7", "/tmp/train.prof"),
                   ("first version of the change: one jit around both", "/tmp/train2.prof")]:
    print(f"== {name}")
    out = io.StringIO()
    st = pstats.Stats(path, stream=out)
    st.sort_stats("cumulative").print_stats(
        r"fometa/__main__|run/training.py:\d+\((_train|initial_state|setup|prepare)\)")
    print("\n".join(l for l in out.getvalue().splitlines()
                    if "function calls" in l or "training.py" in l or "__main__" in l))
