"""Running the CLI in tests and asserting the one-line ``Error:`` contract."""

from __future__ import annotations

from click.testing import CliRunner, Result

from hpo.cli import main


def run_cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def assert_error(result: Result, *needles: str, secret: str | None = None) -> str:
    """Exit code 2, exactly one ``Error:`` line containing ``needles``, no traceback, and
    ``secret`` (a password) nowhere in the output. Returns the error line."""
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, result.output
    for n in needles:
        assert n in lines[0], lines[0]
    assert "Traceback" not in result.output
    if secret is not None:
        assert secret not in result.output
    return lines[0]
