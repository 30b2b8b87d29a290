"""Arguments and helpers shared by several subcommands."""

from __future__ import annotations

import argparse
import re

from tuner.errors import UserError


def add_db_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db", metavar="URL", default=None,
        help="SQLAlchemy database URL (default: SQLite in the user data dir, $TUNER_DATA_DIR/tuner.db)",
    )


def parse_seq_lens(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--seq-len {text!r} is not a comma-separated list of integers, e.g. 16,128") from None
    if not values or any(v < 1 or v > 8192 for v in values):
        raise UserError(f"--seq-len {text!r}: give lengths between 1 and 8192, e.g. 16,128")
    return values


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$")


def parse_duration(text: str) -> float:
    """'90', '90s', '10m', '1.5h' -> seconds."""
    match = _DURATION.match(text)
    if not match:
        raise UserError(f"--budget {text!r} is not a duration; use e.g. 90s, 10m or 1h")
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number * {"s": 1, "m": 60, "h": 3600}[unit]


def format_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def format_accuracy(accuracy: dict | None) -> str:
    if not accuracy:
        return "-"
    if "cosine_mean" in accuracy:
        return f"cos mean {accuracy['cosine_mean']:.4f} min {accuracy['cosine_min']:.4f}"
    return f"labels {accuracy['label_agreement']:.1%} max dlogit {accuracy['max_logit_diff']:.3g}"
