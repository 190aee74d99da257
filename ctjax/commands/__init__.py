"""The `ctjax` command line: track, eval, distill, export (argparse only).

Each subcommand is a module here with `add_arguments(parser)` and `run(args) -> int`; none of
them imports jax at module level, so the commands whose speed is reported apply the
single-threaded CPU settings (`ctjax.runtime.configure`) before jax loads: here for `track`,
in each worker for `eval`, and for `distill --single-core`. Otherwise distill and export leave
the backend to jax, so a GPU is used when present. `python -m ctjax` runs `main`.
"""

from __future__ import annotations

import argparse
import sys

from ctjax.commands import distill, evaluate, export, track

COMMANDS = {"track": track, "eval": evaluate, "distill": distill, "export": export}


def build_parser() -> argparse.ArgumentParser:
    """The `ctjax` parser with one subparser per command."""
    parser = argparse.ArgumentParser(prog="ctjax", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        module.add_arguments(sub.add_parser(name, help=module.HELP,
                                            description=" ".join(module.__doc__.split())))
    return parser


def main(argv=None) -> int:
    """Runs the command line; returns the exit status."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    return COMMANDS[args.command].run(args) or 0
