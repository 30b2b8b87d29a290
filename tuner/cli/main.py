"""The ``tuner`` command: one module per subcommand, imported only when used."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import NoReturn

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


# What each exit status means (README's table says the same).
EXIT_CODES = """\
exit codes:
  0    done
  1    a bug in tuner: it printed a traceback; please report it
  2    an error you can fix (a bad option or file, a missing model, the machine held by another run,
       the database, a full disk): one line says what is wrong and what to do; nothing was changed
  3    tuner verify / tuner nightly: the stored speedup no longer holds here (slower, or drifted)
  130  interrupted (Ctrl-C); the same command resumes where it stopped
"""


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (and exit 2) like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; ``command``: only that subcommand's parser (what running
    it needs: `tuner best` in a deploy script does not import the other commands)."""
    parser = Parser(
        prog="tuner",
        description="Hardware-aware auto-tuner for transformer inference.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    names = [command] if command in SUBCOMMANDS else list(SUBCOMMANDS)
    for name in names:
        importlib.import_module(f"tuner.cli.{SUBCOMMANDS[name]}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    from tuner.errors import UserError

    words = sys.argv[1:] if argv is None else argv
    # A known command first: parse with its parser alone (a typo, no command or
    # `--help` gets the whole parser, which lists every command).
    parser = build_parser(words[0] if words else None)
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
    except Exception as exc:
        # A full disk is the environment, not a bug, wherever it struck (a library's
        # write, Optuna's storage): one line naming the folder when it is known.
        from tuner.errors import DiskFullError, is_disk_full

        if not is_disk_full(exc):
            raise
        path = _full_path(exc)
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        line = str(DiskFullError(path)) if path else f"no space left on the disk ({detail}); free some space"
        print(f"tuner: error: {line}", file=sys.stderr)
        return 2


def _full_path(exc: BaseException | None) -> str | None:
    """The folder of the first file named in ``exc``'s chain."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        name = getattr(exc, "filename", None)
        if isinstance(name, (str, bytes, os.PathLike)):
            return os.path.dirname(os.path.abspath(os.fsdecode(name)))
        exc = exc.__cause__ or exc.__context__
    return None


if __name__ == "__main__":
    sys.exit(main())
