"""SIGINT to `python -m fometa train` after each delay: exit status, stderr's lines."""
import subprocess, sys, time, shutil
for d in map(float, sys.argv[1:]):
    shutil.rmtree("/tmp/sigint_run", ignore_errors=True)
    p = subprocess.Popen([sys.executable, "-m", "fometa", "train", "--meta-iters", "3000",
                          "--eval-tasks", "5", "--no-plots", "--no-progress", "--run-dir",
                          "/tmp/sigint_run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd="/tmp")
    time.sleep(d)
    p.send_signal(2)
    out, err = p.communicate()
    lines = err.splitlines()
    print(f"delay {d}: rc {p.returncode}, {len(lines)} stderr lines: "
          f"{lines[0][:90] if lines else ''} ... {lines[-1][:60] if lines else ''}", flush=True)
