"""Arguments and helpers shared by several subcommands.

Every numeric option is checked when the command line is parsed (argparse ``type``
functions below): a value out of range ends the command at once with one line and
exit 2, before anything is opened, measured or created.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable

from tuner.errors import UserError


def add_db_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        metavar="URL",
        default=None,
        help="SQLAlchemy database URL (default: SQLite in the user data dir, $TUNER_DATA_DIR/tuner.db)",
    )


def add_winner_arguments(
    parser: argparse.ArgumentParser,
    objectives: tuple[str, ...] | list[str],
    default_objective: str = "p50",
    seq_len_help: str = "which tuned length (required when several)",
) -> None:
    """--model, --seq-len, --batch and --objective of the commands that read a stored winner."""
    parser.add_argument(
        "--model",
        required=True,
        help="the model as it was tuned: local folder, installed model package or Hugging Face id",
    )
    parser.add_argument("--seq-len", type=positive_int, default=None, metavar="S", help=seq_len_help)
    parser.add_argument("--batch", type=positive_int, default=1, help="the tuned batch size (default 1)")
    parser.add_argument(
        "--objective",
        default=default_objective,
        choices=objectives,
        help=f"which tuning's winner: the objective it was tuned for (default {default_objective})",
    )


# -- argparse type functions: parse and check the range in one step ---------------------


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _real(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_int(text: str) -> int:
    """An integer of 1 or more."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {text}")
    return value


def non_negative_int(text: str) -> int:
    """An integer of 0 or more."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = _integer(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {low} or more, not {text}")
        return value

    parse.__name__ = f"int_at_least_{low}"
    return parse


def int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = _integer(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, not {text}")
        return value

    parse.__name__ = f"int_between_{low}_{high}"
    return parse


def positive_float(text: str) -> float:
    """A number above 0 (seconds, margins)."""
    value = _real(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
    return value


def non_negative_float(text: str) -> float:
    """A number of 0 or more."""
    value = _real(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def fraction(text: str) -> float:
    """A threshold between 0 and 1 (cosines, agreement)."""
    value = _real(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {text}")
    return value


def dominance_ratio(text: str) -> float:
    """0 (off) or a ratio above 1."""
    value = _real(text)
    if value < 0 or 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be above 1 (e.g. 3), or 0 to run every proposal, not {text}")
    return value


def duration(text: str) -> float:
    """'90', '90s', '10m', '1.5h' -> seconds, above 0."""
    try:
        seconds = parse_duration(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[-1]) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, e.g. 90s, 10m or 1h, not {text!r}")
    return seconds


def seq_lens(text: str) -> list[int]:
    """'16,128' -> [16, 128]."""
    try:
        return parse_seq_lens(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[-1]) from None


def size_mb(text: str) -> float:
    """'800M', '2G', '1.5g', '512' (MB) -> megabytes, above 0."""
    try:
        return parse_size(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[-1]) from None


# -- the parsers behind them (UserError: also used outside argparse) --------------------


def parse_seq_lens(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--seq-len {text!r}: not a comma-separated list of integers, e.g. 16,128") from None
    if not values or any(v < 1 or v > 8192 for v in values):
        raise UserError(f"--seq-len {text!r}: give lengths between 1 and 8192, e.g. 16,128")
    return values


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$")


def parse_duration(text: str) -> float:
    """'90', '90s', '10m', '1.5h' -> seconds."""
    match = _DURATION.match(text)
    if not match:
        raise UserError(f"--budget {text!r}: not a duration; use e.g. 90s, 10m or 1h")
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number * {"s": 1, "m": 60, "h": 3600}[unit]


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)


def parse_size(text: str) -> float:
    """'800M', '2G', '1.5g', '512' (MB) -> megabytes."""
    match = _SIZE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise UserError(f"--max-memory {text!r}: not a size above 0; use e.g. 800M or 2G")
    scale = {"": 1.0, "k": 1 / 1024, "m": 1.0, "g": 1024.0, "t": 1024.0**2}[match.group(2).lower()]
    return float(match.group(1)) * scale


def format_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def format_accuracy(accuracy: dict | None) -> str:
    if not accuracy:
        return "-"
    if "cosine_mean" in accuracy:
        return f"cos mean {accuracy['cosine_mean']:.4f} min {accuracy['cosine_min']:.4f}"
    return f"labels {accuracy['label_agreement']:.1%} max dlogit {accuracy['max_logit_diff']:.3g}"
