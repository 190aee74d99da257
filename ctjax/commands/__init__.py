"""The `ctjax` command line: track, eval, distill, export (argparse only).

Each subcommand is a module here with `add_arguments(parser)` and `run(args) -> int`; none of
them imports jax at module level, so the commands whose speed is reported apply the
single-threaded CPU settings (`ctjax.runtime.configure`) before jax loads: here for `track`,
in each worker for `eval`, and for `distill --single-core`. Otherwise distill and export leave
the backend to jax, so a GPU is used when present. `python -m ctjax` runs `main`.

Errors: run as a program (`ctjax ...`, `python -m ctjax ...`), an error a user can act on (a
bad box, a missing or corrupt file, a bad config value, a missing optional dependency) ends
in one line, `ctjax <command>: error: <message>`, and exit status 2, without a traceback
(`--debug`, or `CTJAX_DEBUG=1`, shows it); Ctrl-C ends with exit status 130. Called from
Python as `main([...])`, errors propagate as exceptions unless `one_line_errors=True`.
"""

from __future__ import annotations

import argparse
import os
import sys

from ctjax.commands import distill, evaluate, export, track

COMMANDS = {"track": track, "eval": evaluate, "distill": distill, "export": export}
# Exception types whose message is meant for the user (SequenceError, BoxError,
# DataNotFoundError, config errors, ... are subclasses); anything else keeps its traceback.
USER_ERRORS = (ValueError, OSError, ImportError)
EXIT_ERROR, EXIT_INTERRUPTED = 2, 130


def build_parser() -> argparse.ArgumentParser:
    """The `ctjax` parser with one subparser per command."""
    parser = argparse.ArgumentParser(prog="ctjax", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error instead of one line")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        module.add_arguments(sub.add_parser(name, help=module.HELP,
                                            description=" ".join(module.__doc__.split())))
    return parser


def error_line(command: str, error: BaseException) -> str:
    """The one line a user sees for `error`: the message, its first line if it has several."""
    text = " ".join(str(error).split()) or type(error).__name__
    return f"ctjax {command}: error: {text}"


def main(argv=None, *, one_line_errors: bool | None = None) -> int:
    """Runs the command line; returns the exit status.

    Args:
      argv: the arguments (default `sys.argv[1:]`).
      one_line_errors: print user errors (`USER_ERRORS`) as one line and return 2 instead of
        raising; default True when run as a program (argv None), False when called with argv.
    """
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    if one_line_errors is None:
        one_line_errors = argv is None
    if args.debug or os.environ.get("CTJAX_DEBUG") == "1":
        one_line_errors = False
    try:
        return COMMANDS[args.command].run(args) or 0
    except KeyboardInterrupt:
        if not one_line_errors:
            raise
        print(f"ctjax {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except USER_ERRORS as e:
        if not one_line_errors:
            raise
        print(error_line(args.command, e), file=sys.stderr)
        return EXIT_ERROR
