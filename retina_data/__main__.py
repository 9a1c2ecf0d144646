"""``python -m retina_data COMMAND ...`` (see :mod:`retina_data.cli`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

from retina_data import cli
from retina_data.commandline import run_cli


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of ``python -m retina_data`` and the ``retina-data`` script."""
    run_cli(cli.main, argv)


if __name__ == "__main__":
    main()
