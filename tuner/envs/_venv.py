"""Build, inspect and remove one environment on disk.

Layout under ``<cache dir>/envs/``::

    <name>/                  a virtual environment (python -m venv)
    <name>/tuner-env.json    the manifest, written last: its presence means "complete"
    .locks/<name>.lock       keeps two `tuner env create` runs off the same folder

An environment is *ready* when its manifest exists and records the packages the
backend file declares now; otherwise it is absent, incomplete (a build died), or
stale (the declaration changed), and the backend is pruned with the command to run.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tuner._version import __version__
from tuner.envs._declared import env_for_backend, lookup
from tuner.errors import UserError
from tuner.space.environments import (
    MANIFEST_FILE,
    READY,
    EnvState,
    env_dir,
    env_state,
    envs_root,
    project_name,
    requested_packages,
)
from tuner.space.schema import EnvDecl

# The .pth that puts a source checkout of the tuner on the environment's sys.path.
_LINK_FILE = "tuner-source.pth"
# The tuner package folder this code runs from.
_PACKAGE = Path(__file__).resolve().parents[1]


def worker_python(config: dict[str, Any]) -> str | None:
    """The interpreter ``config``'s trial runs with: None for the tuner's own, else the
    backend's environment. Raises UserError (with the command to run) when it is not ready."""
    backend = config.get("backend")
    if not isinstance(backend, str):
        return None
    decl = env_for_backend(backend)
    if decl is None:
        return None
    state = env_state(decl)
    if state.status != READY:
        raise UserError(f"backend {backend}: {state.why}")
    return str(state.python)


def _tuner_source() -> Path | None:
    """The source checkout the running tuner comes from (None: an installed wheel)."""
    root = _PACKAGE.parent
    if (root / "pyproject.toml").is_file() and (root / "search_spaces").is_dir():
        return root
    return None


def _run(argv: Sequence[str], quiet: bool) -> None:
    """Run a build step, its output on the terminal (pip's progress is the feedback a
    several-GB download needs), or captured and shown only when it fails."""
    # subprocess is imported where something runs: `tuner best` imports this module (for
    # worker_python) on every call and runs nothing, and the import costs it milliseconds.
    import subprocess

    if quiet:
        captured = subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        returncode, output = captured.returncode, captured.stdout
    else:
        returncode, output = subprocess.run(list(argv)).returncode, ""
    if returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-15:])
        raise UserError(
            f"`{' '.join(argv[:4])} ...` failed with exit code {returncode}"
            + (f":\n{tail}" if tail else " (its output is above)")
        )


@contextmanager
def _locked(name: str) -> Iterator[None]:
    locks = envs_root() / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{name}.lock", "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another `tuner env create {name}` is running; wait for it to finish") from None
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def create_env(
    name: str,
    *,
    force: bool = False,
    find_links: Sequence[str] = (),
    quiet: bool = False,
    base_python: str | None = None,
) -> EnvState:
    """Build environment ``name`` as its backend file declares it.

    A ready, current environment is left alone unless ``force``; anything else in the
    folder (a dead build, a stale one) is removed first. The manifest is written last,
    so a build interrupted at any point leaves an environment that reads "incomplete".
    """
    decl, backends = lookup(name)
    with _locked(name):
        state = env_state(decl)
        if state.status == READY and not force:
            return state
        folder = env_dir(name)
        if folder.exists():
            shutil.rmtree(folder)
        started = time.time()
        try:
            _run([base_python or _base_python(), "-m", "venv", str(folder)], quiet=True)
            python = str(folder / "bin" / "python")
            pip = [python, "-m", "pip", "install", "--disable-pip-version-check"]
            pip += [arg for link in find_links for arg in ("--find-links", link)]
            _run([*pip, *requested_packages(decl)], quiet=quiet)
            link = _link_tuner(python)
            installed = _check_imports(python, decl)
        except BaseException:
            # A half-built environment is worth nothing: remove it, keep the error.
            shutil.rmtree(folder, ignore_errors=True)
            raise
        python_version = installed.pop("python", "")
        manifest = {
            "name": name,
            "backends": backends,
            "packages": requested_packages(decl),
            "installed": installed,
            "tuner_link": link,
            "tuner_version": __version__,
            "python": python_version,
            "build_seconds": round(time.time() - started, 1),
            "size_bytes": _size(folder),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        tmp = folder / f"{MANIFEST_FILE}.tmp"
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
        os.replace(tmp, folder / MANIFEST_FILE)
        return env_state(decl)


def _base_python() -> str:
    """The interpreter new environments are made from: this one's base (a venv made
    from inside a venv is based on the base interpreter anyway, said plainly here)."""
    candidate = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    return str(candidate) if candidate.exists() else sys.executable


def _site_packages(python: str) -> Path:
    import subprocess

    out = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(out.stdout.strip())


def _link_tuner(python: str) -> str:
    """Make ``import tuner`` in the environment find this tuner: a .pth to the source
    checkout (so the environment never runs older code than the tuner that starts it),
    or a copy of the installed package (then the manifest's version guards it)."""
    site = _site_packages(python)
    source = _tuner_source()
    if source is not None:
        (site / _LINK_FILE).write_text(f"{source}\n")
        return str(source)
    shutil.copytree(_PACKAGE, site / "tuner", ignore=shutil.ignore_patterns("__pycache__"))
    return "copy"


_CHECK = """
import importlib, importlib.metadata as md, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
wanted = json.loads(sys.stdin.read())
found = {"python": "%d.%d.%d" % sys.version_info[:3]}
for name in wanted:
    try:
        found[name] = md.version(name)
    except md.PackageNotFoundError:
        pass
print(json.dumps(found))
"""


def _check_imports(python: str, decl: EnvDecl) -> dict[str, str]:
    """Import the worker and the declared modules in the new environment (a wheel that
    installs but cannot load on this CPU fails here, not in every trial); returns the
    versions of the declared packages."""
    modules = ["tuner.trial.worker", *decl.imports]
    names = [project_name(p) for p in requested_packages(decl)]
    import subprocess

    done = subprocess.run([python, "-c", _CHECK, *modules], input=json.dumps(names), capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-8:])
        raise UserError(
            f"environment {decl.name!r} installed, but importing {', '.join(modules)} in it failed:\n{tail}"
        )
    versions: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    return versions


def _size(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for file in files:
            try:
                total += os.lstat(os.path.join(root, file)).st_size
            except OSError:
                pass
    return total


def remove_env(name: str) -> bool:
    """Delete environment ``name``; False when there was none. Any folder under envs/
    can be removed, declared or not (a backend file may have been deleted since)."""
    if not name or "/" in name or name.startswith("."):
        raise UserError(f"{name!r} is not an environment name")
    folder = env_dir(name)
    if not folder.exists():
        return False
    with _locked(name):
        shutil.rmtree(folder)
    return True
