"""What every entry point does at its edge: turn user errors into one line and exit 2.

Besides our own :class:`RetinaError`, errors of the file system (a full or read-only disk,
a missing permission, an output path below a file) are the user's to fix, so they get the
same one line, naming the path: ``error: <path>: <what the system said>``.
"""

from __future__ import annotations

import contextlib
import errno
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

from retina_data.errors import RetinaError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def notice(message: str) -> None:
    """A one-line message to the user on stderr (``notice: ...``), the one way both trees tell
    the user something that is not an error."""
    print(f"notice: {message}", file=sys.stderr)


@contextlib.contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """Within the block SIGTERM raises :class:`KeyboardInterrupt` as Ctrl-C does (main thread
    only), so work outside a training loop (latent fits, predictions, scoring) stops with the
    same notice and exit code as an interrupted training; a training loop's own signal
    handling takes over while it runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def is_stop(exc: BaseException | None) -> bool:
    """Whether ``exc`` ends a block because of SIGTERM or Ctrl-C: a :class:`KeyboardInterrupt`, or an
    exception it caused or that was raised while it was handled (library code wraps it: an import
    interrupted inside a dataclass's ``__set_name__`` surfaces as a ``RuntimeError``, Lightning turns
    it into ``exit(1)``)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def os_error_line(exc: OSError) -> str:
    """``<path>: <reason>`` of a file-system error (``<reason>`` alone when it names no path)."""
    reason = exc.strerror or str(exc)
    hint = {
        errno.ENOSPC: " (disk full?)",
        errno.EROFS: " (read-only file system)",
        errno.EACCES: " (no permission)",
        errno.ENOTDIR: " (a part of the path is a file)",
        errno.EEXIST: " (a file is in the way of a folder)",
    }.get(exc.errno or 0, "")
    return f"{exc.filename}: {reason}{hint}" if exc.filename else f"{reason}{hint}"


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> NoReturn:
    """Run ``main(argv)``; a :class:`RetinaError` prints ``error: <reason>`` and exits 2.

    Programming errors keep their traceback: they are bugs, not user errors.
    """
    try:
        code = main(argv)
    except RetinaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except OSError as exc:
        print(f"error: {os_error_line(exc)}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except BaseException as exc:  # only stops are handled here, anything else keeps its traceback
        if not is_stop(exc):
            raise
        print("interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(code or 0)
