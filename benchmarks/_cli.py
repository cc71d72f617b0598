"""Entry point shared by the benchmark scripts: a mistake in their inputs (a missing data file,
an unknown model, an unreachable database) prints one ``Error: ...`` line, not a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable

from hpo.errors import USER_ERRORS


def run(main: Callable[[], None]) -> None:
    try:
        main()
    except USER_ERRORS as e:
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted; results not written", file=sys.stderr)
        sys.exit(130)
