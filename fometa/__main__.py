"""`python -m fometa`: the `fometa` command (`fometa.run.cli`)."""

import os
import sys

from fometa.run.cli import main

code = main()
if code == 2:
    # A user error, already said in one line (checkpoints are closed by then). Leave without
    # the interpreter's shutdown, where orbax's asyncio threads can print "Event loop is
    # closed" tracebacks after that line.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(2)
sys.exit(code)
