"""The tuner's error tree.

A ``UserError`` is something the user can fix (a bad model path, a malformed space
file, a locked database): the CLI prints its message as one line and exits 2.
Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


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


class UnsupportedConfigError(TunerError):
    """A backend cannot run this configuration (raised inside a trial worker)."""
