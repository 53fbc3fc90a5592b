"""`python -m fometa`: the `fometa` command (`fometa.run.cli`)."""

from fometa.run.cli import console

console()
