"""Fixtures shared by the test files."""

import pytest

from fometa.run.cli import main


@pytest.fixture
def cli_error(capsys):
    """Runs `fometa ARGV...` expecting a user error: exit 2 and one line on stderr,
    starting "fometa: error: ". Returns that line."""

    def run(argv):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
        err = capsys.readouterr().err
        assert code == 2, err
        assert err.startswith("fometa: error: ") and err.count("\n") == 1, err
        return err

    return run
