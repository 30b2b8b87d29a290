"""``tuner env list|create|remove NAME``: the per-backend Python environments
(IPEX, onnxruntime-gpu, ...) that search-space files declare with ``[env]``."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "env",
        help="list, create or remove the environments some backends run in (e.g. ipex)",
        description="A backend whose packages conflict with the tuner's (IPEX needs torch 2.8; onnxruntime-gpu "
        "replaces onnxruntime) runs its trials in its own virtual environment under the cache directory. "
        "Until it is created, `tuner space` lists the backend as pruned.",
    )
    actions = parser.add_subparsers(dest="env_action", metavar="ACTION")
    listing = actions.add_parser("list", help="every declared environment, its state, and the backends using it")
    listing.add_argument("--json", action="store_true", help="print as JSON")
    listing.set_defaults(func=run_list)
    create = actions.add_parser("create", help="build an environment (pip downloads; IPEX is about 4 GB)")
    create.add_argument("name", help="the environment, as `tuner env list` names it (e.g. ipex)")
    create.add_argument("--force", action="store_true", help="rebuild even if it is ready")
    create.add_argument(
        "--find-links",
        action="append",
        default=[],
        metavar="DIR",
        help="also look for wheels in DIR (pip --find-links; repeatable), e.g. for a machine offline",
    )
    create.add_argument("--quiet", action="store_true", help="hide pip's output unless it fails")
    create.set_defaults(func=run_create)
    remove = actions.add_parser("remove", help="delete an environment")
    remove.add_argument("name", help="the environment, as `tuner env list` names it")
    remove.set_defaults(func=run_remove)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _size(size: object) -> str:
    if not isinstance(size, (int, float)):
        return "-"
    return f"{size / 1e9:.1f} GB" if size >= 1e8 else f"{size / 1e6:.0f} MB"


def run_list(args: argparse.Namespace) -> int:
    from tuner.envs import declared_envs, env_state

    rows = []
    for name, (decl, backends) in declared_envs().items():
        state = env_state(decl)
        rows.append(
            {
                "name": name,
                "status": state.status,
                "backends": backends,
                "path": str(state.path),
                "packages": list(decl.packages),
                "installed": state.manifest.get("installed", {}),
                "size_bytes": state.manifest.get("size_bytes"),
                "why": state.why,
                "help": decl.help,
            }
        )
    if getattr(args, "json", False):
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no backend declares an environment")
        return 0
    for row in rows:
        print(f"{row['name']}: {row['status']}  (backends: {', '.join(row['backends'])}; {_size(row['size_bytes'])})")
        if row["help"]:
            print(f"  {row['help']}")
        print(f"  path: {row['path']}")
        if row["installed"]:
            print("  installed: " + ", ".join(f"{k} {v}" for k, v in sorted(row["installed"].items())))
        else:
            print("  packages: " + ", ".join(row["packages"]))
        if row["why"]:
            print(f"  {row['why'].split(': ', 1)[-1]}")
    return 0


def run_create(args: argparse.Namespace) -> int:
    from tuner.envs import create_env, env_dir

    print(f"building environment {args.name!r} in {env_dir(args.name)}")
    state = create_env(args.name, force=args.force, find_links=args.find_links, quiet=args.quiet)
    installed = ", ".join(f"{k} {v}" for k, v in sorted(state.manifest.get("installed", {}).items()))
    seconds = state.manifest.get("build_seconds")
    print(
        f"environment {args.name!r} is ready ({installed}; {_size(state.manifest.get('size_bytes'))}"
        + (f", built in {seconds:.0f} s" if isinstance(seconds, (int, float)) else "")
        + ")"
    )
    print(f"backends using it: {', '.join(state.manifest.get('backends', []))}; `tuner space` now lists them")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    from tuner.envs import remove_env

    if remove_env(args.name):
        print(f"removed environment {args.name!r}")
    else:
        print(f"no environment {args.name!r} to remove")
    return 0
