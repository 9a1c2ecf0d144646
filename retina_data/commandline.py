"""What every entry point does at its edge: turn user errors into one line and exit 2."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from retina_data.errors import RetinaError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> NoReturn:
    """Run ``main(argv)``; a :class:`RetinaError` prints ``error: <reason>`` and exits 2.

    Programming errors keep their traceback: they are bugs, not user errors.
    """
    try:
        code = main(argv)
    except RetinaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(code or 0)
