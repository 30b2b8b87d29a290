"""Installed distributions' versions, as ``importlib.metadata.version`` gives them,
without importing importlib.metadata.

``tuner detect`` and every `tuner best` read the versions of the libraries that decide
inference speed; importing importlib.metadata (email, zipfile, csv, ...) costs more CPU
than the lookups themselves, a large part of `tuner best`'s 300 ms (issue 13). The
common case is simple: the metadata folders (``name-1.0.dist-info``, ``name.egg-info``)
in the folders of ``sys.path``, the first match in path order, and the ``Version``
header of its METADATA (else PKG-INFO). That is done here, the way importlib.metadata
does it (its ``FastPath``/``Lookup`` name matching, the email parser's header rules);
anything else (a zip or an .egg on sys.path, another finder that knows distributions,
a metadata file this reading does not settle) is asked of importlib.metadata itself, so
the answer is the same (tests/test_metadata.py compares them).
"""

from __future__ import annotations

import os
import re
import sys
from importlib.machinery import PathFinder

__all__ = ["distribution_version", "version"]

# importlib.metadata.Prepared.normalize: PEP 503, with dashes as underscores.
_SEPARATORS = re.compile(r"[-_.]+")
# A line of the header section (email.feedparser.headerRE); anything else ends it.
_HEADER = re.compile(r"^(From |[\041-\071\073-\176]*:|[\t ])")
_LINES = re.compile(r"\r\n|\r|\n")  # email.feedparser's line ends
_UNREADABLE = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


class _Ask(Exception):
    """This reading does not settle it: importlib.metadata answers."""


def _normalize(name: str) -> str:
    return _SEPARATORS.sub("-", name).lower().replace("-", "_")


# Path entry -> (its modification time, normalized name -> metadata folders in
# listing order), as importlib.metadata's Lookup keeps it.
_listings: dict[str, tuple[float, dict[str, list[str]]]] = {}


def _listing(root: str) -> dict[str, list[str]]:
    try:
        mtime = os.stat(root or ".").st_mtime
    except OSError:
        return {}  # not there: importlib finds nothing in it either
    cached = _listings.get(root)
    if cached is not None and cached[0] == mtime:
        return cached[1]
    if os.path.basename(root).lower().endswith(".egg"):
        raise _Ask  # an egg's own EGG-INFO layout
    try:
        children = os.listdir(root or ".")
    except OSError:
        if os.path.isfile(root):
            raise _Ask from None  # a zip file on sys.path
        return {}
    found: dict[str, list[str]] = {}
    for child in children:
        low = child.lower()
        if low.endswith((".dist-info", ".egg-info")):
            found.setdefault(_normalize(low.rpartition(".")[0].partition("-")[0]), []).append(os.path.join(root, child))
    _listings[root] = (mtime, found)
    return found


def _read(folder: str, name: str) -> str | None:
    try:
        with open(os.path.join(folder, name), encoding="utf-8") as file:
            return file.read()
    except _UNREADABLE:
        return None


def _version_header(text: str) -> str:
    """The first ``Version`` header of the header section, as email.message_from_string
    and ``Message["Version"]`` read it; _Ask where that reading is not plain."""
    lines = _LINES.split(text)
    found: str | None = None
    found_at = -1
    for index, line in enumerate(lines):
        if not line or not _HEADER.match(line):
            break  # the blank line (or a body line) ends the headers
        if line[0] in " \t" or (index == 0 and line.startswith("From ")):
            if found is not None and index == found_at + 1:
                raise _Ask  # a folded Version header
            continue
        colon = line.find(":")
        if found is None and colon > 0 and line[:colon].lower() == "version":
            found, found_at = line[colon + 1 :].lstrip(" \t"), index
    if found is None:
        raise _Ask  # importlib says so in its own way (None, with a warning)
    return found


def _fast(name: str) -> str | None:
    if not name:
        raise _Ask  # importlib's ValueError
    if any(hasattr(finder, "find_distributions") for finder in sys.meta_path if finder is not PathFinder):
        raise _Ask  # another finder may know distributions the folders do not show
    wanted = _normalize(name)
    for root in sys.path:
        for folder in _listing(root).get(wanted, ()):
            if not os.path.isdir(folder):
                raise _Ask  # an .egg-info file: its own format
            text = _read(folder, "METADATA") or _read(folder, "PKG-INFO")
            if not text:
                raise _Ask
            return _version_header(text)
    return None


def version(name: str) -> str | None:
    """``importlib.metadata.version(name)``, None where it raises PackageNotFoundError."""
    try:
        return _fast(name)
    except (_Ask, UnicodeDecodeError):
        from importlib import metadata

        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None


def distribution_version(*names: str) -> str | None:
    """The version of the first of these distributions that is installed (None: none is)."""
    for name in names:
        found = version(name)
        if found is not None:
            return found
    return None
