"""Installed versions of the libraries that decide inference speed.

Read from package metadata (what importlib.metadata answers, read the cheap way by
tuner._metadata), never by importing: importing torch alone takes seconds, and
``tuner detect`` must be quick.

Which libraries: the tuner's own (optuna, whose sampler decides what is tried) and
every library a backend declares in its search-space file (``[backend] libraries``,
docs/search-space.md), so that a new backend's libraries enter the fingerprint with
its file. tuner.space checks those files; hardware sits below it, so
``declared_libraries`` reads that one key itself, with ``Library.parse``, which the
checker uses too: one reading of the format.
"""

from __future__ import annotations

import functools
import re
import sys
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner import paths
from tuner._metadata import distribution_version, version

__all__ = ["TUNER_LIBRARIES", "Library", "declared_libraries", "library_versions", "toml_document"]

# A distribution's name as PyPI spells it (PEP 508).
_DISTRIBUTION = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Library:
    """A library and the distributions that provide it: ONNX Runtime ships as several
    builds under different names (onnxruntime, onnxruntime-gpu, ...), one at a time."""

    name: str  # how the fingerprint and `tuner detect` name it: its first distribution, with _ for -
    distributions: tuple[str, ...]  # the alternatives, in order; the first installed one counts

    @classmethod
    def parse(cls, entry: object) -> "Library":
        """``"torch"``, or a list of alternative builds whose first names the library
        (``["onnxruntime", "onnxruntime-gpu"]``). Raises ValueError saying what is wrong."""
        names = [entry] if isinstance(entry, str) else entry
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ValueError("a library is a distribution name or a non-empty list of alternative ones")
        for name in names:
            if not _DISTRIBUTION.match(name):
                raise ValueError(f"{name!r} is not a distribution name")
        if len(set(names)) != len(names):
            raise ValueError(f"{names} lists a distribution twice")
        return cls(names[0].lower().replace("-", "_").replace(".", "_"), tuple(names))

    def installed(self) -> tuple[str, str] | None:
        """(distribution, version) of the first alternative installed; None: none is."""
        for name in self.distributions:
            found = version(name)
            if found is not None:
                return name, found
        return None


# What the tuner itself brings that changes what a study finds.
TUNER_LIBRARIES: tuple[Library, ...] = (Library("optuna", ("optuna",)),)


@functools.lru_cache(maxsize=256)
def toml_document(text: str) -> dict[str, Any]:
    """``tomllib.loads(text)``, once per content and process: ``detect()`` reads the
    search-space files here and the space loader (tuner.space.schema) reads the same
    files again; parsing them is most of what either costs `tuner best`. Shared, so
    read only. Raises TOMLDecodeError as tomllib does."""
    return tomllib.loads(text)


def declared_libraries(directory: Path | None = None) -> tuple[Library, ...]:
    """Every library the backend files of ``directory`` (default: the project's
    search_spaces/) declare, once each, by name. A malformed entry is skipped here:
    loading the space reports it (tuner.space.schema)."""
    folder = directory or paths.search_spaces_dir()
    found: dict[str, Library] = {}
    for path in sorted(folder.glob("*.toml")):
        try:
            table = toml_document(path.read_text(encoding="utf-8")).get("backend", {})
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            continue
        entries = table.get("libraries", []) if isinstance(table, dict) else []
        for entry in entries if isinstance(entries, list) else []:
            try:
                library = Library.parse(entry)
            except ValueError:
                continue
            found.setdefault(library.name, library)
    return tuple(found.values())


def library_versions(libraries: Iterable[Library] | None = None) -> dict[str, str | None]:
    """Library name -> installed version or None, after "python": its major.minor (a
    patch release does not change inference speed, and re-tuning for one would waste
    a night). ``libraries`` default: the tuner's own and every declared one."""
    chosen = list(libraries) if libraries is not None else [*declared_libraries(), *TUNER_LIBRARIES]
    versions: dict[str, str | None] = {"python": f"{sys.version_info.major}.{sys.version_info.minor}"}
    for library in sorted(chosen, key=lambda lib: lib.name):
        versions.setdefault(library.name, distribution_version(*library.distributions))
    return versions
