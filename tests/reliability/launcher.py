"""Run many command lines of one entry point, each in its own process, paying its imports once.

A fresh ``python script.py`` costs 5-10 s of CPU on the test machine before ``main`` runs
(torch, MONAI, Lightning), which would make a table of dozens of bad-input cases take many
minutes. This server imports the entry modules once and then forks one child per request;
the child runs the script exactly as ``python script.py ARGS`` would (``__main__``,
``sys.argv``, ``sys.path[0]``, working folder), with its own stdout/stderr files and exit
code, and an uncaught exception prints its traceback like the interpreter does.

Protocol: one JSON request per line on stdin
``{"argv": [...], "cwd": ..., "stdout": path, "stderr": path}``, where ``argv`` is
``[script.py, args...]`` or ``["-m", module, args...]``; one line ``{"returncode": n}`` back.

The server itself never runs torch operations, so no thread pool exists when it forks.
"""

from __future__ import annotations

import importlib
import json
import os
import runpy
import sys
import traceback
from typing import Any


def _exit_code(exc: SystemExit) -> int:
    """The exit status the interpreter gives ``sys.exit(exc.code)``."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _run_child(request: dict[str, Any]) -> None:
    """In the forked child: redirect output, run the command line, exit with its status."""
    os.chdir(request["cwd"])
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(handle, fd)
        os.close(handle)
    argv = list(request["argv"])
    try:
        if argv[0] == "-m":
            sys.argv = [argv[1], *argv[2:]]
            sys.path[0] = request["cwd"]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = argv
            sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
            runpy.run_path(argv[0], run_name="__main__")
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc)
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def serve(preload: list[str]) -> None:
    """Import ``preload``, then answer requests from stdin until it closes."""
    for name in preload:
        importlib.import_module(name)
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _run_child(request)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    serve(sys.argv[1:])
