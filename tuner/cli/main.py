"""The ``tuner`` command: one module per subcommand, imported only when used."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Subcommand -> module under tuner.cli. Each module has add_parser(subparsers) and run(args).
SUBCOMMANDS = {
    "detect": "detect",
    "space": "space",
    "auto": "auto",
    "best": "best",
    "history": "history",
    "machines": "machines",
    "serve": "serve",
    "verify": "verify",
    "status": "status",
    "nightly": "nightly",
    "measure": "measure",
    "launch": "launch",
    "export": "export",
    "env": "env",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tuner",
        description="Hardware-aware auto-tuner for transformer inference.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMANDS.values():
        importlib.import_module(f"tuner.cli.{module_name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    from tuner.errors import UserError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"tuner: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("tuner: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `tuner ... | head` closed the pipe: not an error. Point stdout at devnull so
        # the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
