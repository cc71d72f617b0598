"""Entry point shared by the benchmark scripts: a mistake in their inputs (a missing data file,
an unknown model, an unreachable database) prints one ``Error: ...`` line, not a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable

from hpo.errors import USER_ERRORS, HpoError


def run(main: Callable[[], None]) -> None:
    try:
        main()
    except USER_ERRORS as e:
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted; results not written", file=sys.stderr)
        sys.exit(130)


def at_least(option: str, value: float, low: float) -> None:
    """Refuse ``option`` below ``low`` with a message naming it (raised as a user error)."""
    if value < low:
        raise HpoError(f"{option} must be at least {low:g} (got {value:g})")


def positive_ints(option: str, text: str) -> list[int]:
    """``"1,4,16"`` -> [1, 4, 16]; anything else is refused with a message naming ``option``."""
    try:
        values = [int(p) for p in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise HpoError(f"{option} takes comma-separated positive whole numbers, like 1,4,16 "
                       f"(got {text!r})")
    return values
