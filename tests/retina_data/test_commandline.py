"""The command-line contract of retina_data.commandline: stops (SIGTERM, Ctrl-C) end with exit 130 also
when library code wrapped the KeyboardInterrupt; other errors keep their traceback."""

from __future__ import annotations

import pytest

from retina_data.commandline import EXIT_INTERRUPTED, is_stop, run_cli


def _interrupted_import() -> None:
    """What a SIGTERM during a lazy import inside a dataclass definition gives (torch.compile's first
    call): the KeyboardInterrupt wrapped in a RuntimeError."""
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt as stop:
        raise RuntimeError("Error calling __set_name__ on 'Field' instance") from stop


def _lightning_exit() -> None:
    """Lightning's exit(1) made of a KeyboardInterrupt in a fit (raised while it is handled)."""
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        raise SystemExit(1) from None


def test_a_stop_is_recognised_directly_caused_or_while_handled() -> None:
    assert is_stop(KeyboardInterrupt())
    for raiser in (_interrupted_import, _lightning_exit):
        with pytest.raises(BaseException) as caught:
            raiser()
        assert is_stop(caught.value)
    try:
        raise ValueError("bad")
    except ValueError as error:
        assert not is_stop(error)
    assert not is_stop(SystemExit(2)) and not is_stop(None)


def test_run_cli_ends_a_wrapped_stop_with_exit_130_and_keeps_other_tracebacks(capsys) -> None:
    def main(_argv) -> int:
        _interrupted_import()
        return 0

    with pytest.raises(SystemExit) as exited:
        run_cli(main, [])
    assert exited.value.code == EXIT_INTERRUPTED and capsys.readouterr().err == "interrupted\n"

    def buggy(_argv) -> int:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        run_cli(buggy, [])
