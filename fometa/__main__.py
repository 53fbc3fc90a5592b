"""`python -m fometa`: the `fometa` command (`fometa.run.cli`)."""

import sys

from fometa.run.cli import main

sys.exit(main())
