"""The tuner's error tree.

A ``UserError`` is something the user can fix (a bad model path, a malformed space
file, a locked database): the CLI prints its message as one line and exits 2.
Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import os
import shutil


class TunerError(Exception):
    """Base of every error the tuner raises on purpose."""


class UserError(TunerError):
    """Bad input or environment; the message says what is wrong and what to do."""

    exit_code = 2


class ModelNotFoundError(UserError):
    """The model is neither a local folder, a bundled package, nor in the HF cache."""


class ModelDownloadError(ModelNotFoundError):
    """The Hugging Face hub did not provide the model: no such repository or revision,
    gated or private without a token, or a download cut short."""


class HubUnreachableError(ModelDownloadError):
    """The Hugging Face hub (or the mirror in HF_ENDPOINT) did not answer in time."""


class UnsupportedModelError(ModelNotFoundError):
    """The model exists but tuner cannot tune it: no weights, or not an encoder it runs."""


class SpaceFileError(UserError):
    """A search-space TOML file is malformed; the message names the file."""


class StoreError(UserError):
    """The database cannot be opened, written, or has an unknown schema."""


class LockedError(UserError):
    """Another tuning run holds this machine."""


class DiskFullError(UserError):
    """No space left (ENOSPC) or over the quota (EDQUOT) where the tuner writes: the
    artifact cache, the database, an export. The message names the folder, the space
    needed (when known) and the space free."""

    PREFIX = "no space left on "

    def __init__(
        self,
        path: str | os.PathLike[str],
        needed_mb: float | None = None,
        hint: str = "free some space or write elsewhere",
    ) -> None:
        self.path = str(path)
        self.needed_mb = needed_mb
        free = free_mb(self.path)
        parts = [
            f"{needed_mb:.0f} MB needed" if needed_mb is not None else "",
            f"{free:.0f} MB free" if free is not None else "",
        ]
        figures = ", ".join(p for p in parts if p)
        super().__init__(f"{self.PREFIX}{self.path}{': ' + figures if figures else ''}; {hint}")

    @classmethod
    def from_line(cls, line: str) -> DiskFullError:
        """The error whose message is ``line`` (one a worker reported)."""
        exc = cls.__new__(cls)
        UserError.__init__(exc, line)
        rest = line[len(cls.PREFIX) :] if line.startswith(cls.PREFIX) else line
        exc.path = rest.split(": ", 1)[0].split("; ", 1)[0]
        exc.needed_mb = None
        return exc

    @classmethod
    def in_reason(cls, reason: str | None, where: str | os.PathLike[str]) -> str | None:
        """The disk-full line of a failed run's reason (a worker reports its exception as
        ``Type: message``; a library's OSError names no folder, so ``where`` is named),
        or None when it failed for another reason."""
        if not reason:
            return None
        head = f"{cls.__name__}: "
        if head in reason:
            return reason.split(head, 1)[1].strip()
        return str(cls(where)) if describes_full_disk(reason) else None


# How libraries word a full disk when they do not pass the errno on (SQLite's
# SQLITE_FULL, ONNX's and protobuf's writers print strerror).
_FULL_DISK_WORDS = (
    "no space left on device",
    "disk quota exceeded",
    "database or disk is full",
    "[errno 28]",
    "[errno 122]",
)


def describes_full_disk(text: str) -> bool:
    lowered = text.lower()
    return any(words in lowered for words in _FULL_DISK_WORDS)


def is_disk_full(exc: BaseException | None) -> bool:
    """ENOSPC or EDQUOT anywhere in ``exc``'s chain of causes, or a library's words for it."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(exc, DiskFullError) or describes_full_disk(str(exc)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def free_mb(path: str | os.PathLike[str]) -> float | None:
    """Free space (MB) of the file system holding ``path`` (its nearest existing folder)."""
    folder = os.path.abspath(os.fspath(path))
    while not os.path.exists(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    try:
        return shutil.disk_usage(folder).free / 2**20
    except OSError:
        return None


class UnsupportedConfigError(TunerError):
    """A backend cannot run this configuration (raised inside a trial worker)."""
