"""Finding the shared libraries a configuration preloads: allocators and Intel OpenMP.

A library is looked for where the three usual installers put it: Debian/Ubuntu's
multiarch folder (``apt-get install libjemalloc2``), a conda environment
(``$CONDA_PREFIX/lib``) and a virtual environment (``sys.prefix/lib``, where PyPI's
``intel-openmp`` lands). ``$TUNER_<NAME>_LIBRARY`` (for example
``TUNER_JEMALLOC_LIBRARY=/opt/jemalloc/lib/libjemalloc.so.2``) names one file and
replaces the search, for a custom build.

Launch scripts that guess one folder (``/usr/lib``) silently run without the
allocator on Debian, where it lives under ``/usr/lib/x86_64-linux-gnu``; here a
library that is not found is a reason, shown by ``tuner space`` and recorded with
the trial.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Library:
    name: str  # the key in search_spaces and in the probe: jemalloc, tcmalloc, iomp5
    files: tuple[str, ...]  # file names, best first
    install: str  # how to get it, for the reason when it is missing


LIBRARIES: dict[str, Library] = {
    "jemalloc": Library(
        "jemalloc",
        ("libjemalloc.so.2", "libjemalloc.so"),
        "install libjemalloc2 (scripts/install-system-packages.sh) or `conda install jemalloc`",
    ),
    # The minimal build is what Debian packages on its own and all a preload needs
    # (the full one adds the heap profiler).
    "tcmalloc": Library(
        "tcmalloc",
        ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4", "libtcmalloc_minimal.so", "libtcmalloc.so"),
        "install libtcmalloc-minimal4 (scripts/install-system-packages.sh) or `conda install gperftools`",
    ),
    "iomp5": Library(
        "iomp5",
        ("libiomp5.so",),
        "`pip install intel-openmp` (it lands in <venv>/lib) or `conda install intel-openmp`",
    ),
}


def override_variable(name: str) -> str:
    return f"TUNER_{name.upper()}_LIBRARY"


def search_dirs() -> list[Path]:
    """Folders searched in order: environments first (what the user chose to install
    beside this Python), then the system's library folders."""
    dirs: list[str] = []
    if os.environ.get("CONDA_PREFIX"):
        dirs.append(os.path.join(os.environ["CONDA_PREFIX"], "lib"))
    dirs += [os.path.join(sys.prefix, "lib"), os.path.join(sys.base_prefix, "lib")]
    multiarch = sysconfig.get_config_var("MULTIARCH")
    if multiarch:
        dirs += [f"/usr/lib/{multiarch}", f"/lib/{multiarch}", f"/usr/local/lib/{multiarch}"]
    dirs += ["/usr/lib64", "/usr/lib", "/usr/local/lib", "/lib64", "/lib"]
    seen: set[str] = set()
    unique = []
    for d in dirs:
        if d not in seen:
            seen.add(d)
            unique.append(Path(d))
    return unique


def find(name: str) -> Path | None:
    """The absolute path of library ``name`` (a key of LIBRARIES), or None."""
    library = LIBRARIES[name]
    override = os.environ.get(override_variable(name))
    if override:
        path = Path(override)
        return path.resolve() if path.is_file() else None
    for folder in search_dirs():
        for file in library.files:
            path = folder / file
            if path.is_file():
                return path
    return None


def why_missing(name: str) -> str | None:
    """None when ``name`` is found; else one line: where it was looked for and how to get it."""
    if name not in LIBRARIES:
        return f"unknown library {name!r} (known: {', '.join(LIBRARIES)})"
    if find(name) is not None:
        return None
    library = LIBRARIES[name]
    override = os.environ.get(override_variable(name))
    if override:
        return f"{library.files[0]} not found: ${override_variable(name)} names {override}, which is not a file"
    folders = ", ".join(str(d) for d in search_dirs())
    return f"{library.files[0]} not found (looked in {folders}); {library.install}"


class MissingLibraryError(ValueError):
    """A configuration asks to preload a library this machine does not have."""


def require(name: str) -> str:
    """The path of ``name`` as a string for LD_PRELOAD; MissingLibraryError when absent."""
    path = find(name)
    if path is None:
        raise MissingLibraryError(why_missing(name) or f"{name} not found")
    return str(path)
