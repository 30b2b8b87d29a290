"""``tuner space --model M [--json]``: the search space this machine can run, what
was pruned and why, and how many configurations it holds."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tuner.space import Space


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "space",
        help="show the search space for a model on this machine, and what was pruned and why",
        description="Load search_spaces/*.toml for this machine: every backend's dimensions and "
        "choices, the options pruned before sampling with their reasons, and the size.",
    )
    # The space does not depend on the model yet; a later backend may be pruned for
    # one (an architecture it cannot export), so the argument is part of the command.
    parser.add_argument("--model", required=True, help="Hugging Face id or local model folder")
    parser.add_argument(
        "--backends",
        type=lambda text: [b.strip() for b in text.split(",") if b.strip()],
        default=None,
        help="comma-separated backends to keep (default: all)",
    )
    parser.add_argument(
        "--space",
        dest="space_files",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="a search-space TOML file of your own read over the shipped ones, as `tuner auto "
        "--space` reads it (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print the space as JSON")
    parser.set_defaults(func=run)


def _value(value: object) -> str:
    return json.dumps(value) if isinstance(value, bool) else str(value)


def format_space(space: Space) -> str:
    lines: list[str] = []
    for backend in space.backends:
        dims = space.dimensions(backend)
        marker = (
            "  (stock default: "
            + ", ".join(f"{k}={_value(v)}" for k, v in space.default_config().items() if k != "backend")
            + ")"
            if backend == space.default_backend
            else ""
        )
        lines.append(f"{backend}{marker}")
        if backend in space.notes:
            lines.append(f"  note: {space.notes[backend]}")
        width = max(len(d.name) for d in dims)
        values_width = max(len(d.describe_values()) for d in dims)
        for dim in dims:
            text = f"  {dim.name:<{width}}  {dim.describe_values()}"
            if dim.when:
                text = f"  {dim.name:<{width}}  {dim.describe_values():<{values_width}}  when {dim.describe_when()}"
            lines.append(text)
    if space.pruned:
        lines.append("pruned:")
        for p in space.pruned:
            if p.dimension == "backend":
                lines.append(f"  backend {p.choice}: {p.reason}")
            else:
                where = f"{p.backend} " if p.backend else ""
                lines.append(f"  {where}{p.dimension}={_value(p.choice)}: {p.reason}")
    per_backend = [sum(1 for c in space.configs() if c["backend"] == b) for b in space.backends]
    breakdown = " + ".join(f"{n} {b}" for n, b in zip(per_backend, space.backends))
    lines.append(f"size: {space.size()} configurations ({breakdown})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from tuner.hardware import detect
    from tuner.space.loader import load_space_with

    space = load_space_with(detect(), getattr(args, "space_files", []), backends=getattr(args, "backends", None))
    if getattr(args, "json", False):
        data = {"model": args.model, **space.to_dict()}
        print(json.dumps(data, indent=2))
    else:
        print(format_space(space))
    return 0
