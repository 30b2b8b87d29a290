"""The Hugging Face side of a model: which files of a repository tuner needs, the
local cache, and downloads from the hub (or the mirror in ``HF_ENDPOINT``).

``tuner.model.resolve_model`` asks here for ``org/name[@revision]`` once a local
folder and an installed model package are ruled out: first the local cache, with no
network at all; then, when the caller allows it, the hub through huggingface_hub,
fetching only what a backend loads (``model_files``) into the standard cache.

What huggingface_hub does on its own and why this module adds to it (read in its
2.5 source): ``model_info`` and the tree listing inside ``snapshot_download`` are
sent with no timeout at all, so a hub that accepts connections and never answers
would hang a run forever; the per-file HEAD has a 10 s timeout
(``HF_HUB_ETAG_TIMEOUT``) but is retried with a 60 s one when no local copy exists;
the GET of a file reads with a 10 s timeout (``HF_HUB_DOWNLOAD_TIMEOUT``) and
resumes up to 5 times; and the first request of a process first fetches an agent
registry from the endpoint (3 s timeout, failures ignored). So every request of its
shared client gets bounded connect and read timeouts here, and the first contact
runs under a 12 s deadline that also covers a DNS lookup: an unreachable hub fails
within it (refused at once; a blackholed socket in 12 s), and `tuner auto` exits 2
well within 20 s.

huggingface_hub is imported inside the functions: the CLI imports this module on
start-up.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner.errors import HubUnreachableError, ModelDownloadError, ModelNotFoundError, UnsupportedModelError

__all__ = [
    "CONFIG_FILE",
    "HubId",
    "Snapshot",
    "TOKENIZER_FILES",
    "download",
    "find_cached",
    "model_files",
    "parse_hub_id",
    "weight_files",
]

CONFIG_FILE = "config.json"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)
# The weights transformers loads: one file or its shards (with the index that names
# them). safetensors when the repository has it; pickled .bin only when it does not.
_SAFETENSORS = re.compile(r"^model(-\d+-of-\d+)?\.safetensors$")
_PYTORCH_BIN = re.compile(r"^pytorch_model(-\d+-of-\d+)?\.bin$")
_INDEXES = {"safetensors": "model.safetensors.index.json", "bin": "pytorch_model.bin.index.json"}
# sentence-transformers' description of how embeddings are pooled; small, and what an
# embedding model's accuracy guard should pool like.
_SENTENCE_TRANSFORMERS = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")
_POOLING_CONFIG = re.compile(r"^\d+_Pooling/config\.json$")

_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# A hub id: "name" or "org/name", letters, digits, "-", "_", "." (no "--" or "..").
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?$")

# Network limits (seconds). Connect: a hub that drops packets. Read: one that accepts
# and never answers. Deadline: the first contact as a whole (DNS, huggingface_hub's
# agent-registry fetch, model info), raised by HF_HUB_ETAG_TIMEOUT above 10 s.
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 10.0
FIRST_CONTACT_DEADLINE_S = 12.0


# --- what a model repository holds ---------------------------------------------------


def weight_files(names: Iterable[str]) -> list[str]:
    """The weight files among ``names`` (paths in a repository or folder), sorted:
    the safetensors ones when there are any, else the PyTorch .bin ones."""
    names = list(names)
    for pattern, kind in ((_SAFETENSORS, "safetensors"), (_PYTORCH_BIN, "bin")):
        found = sorted(n for n in names if pattern.match(n))
        if found:
            index = _INDEXES[kind]
            return found + ([index] if index in names else [])
    return []


def model_files(names: Iterable[str]) -> list[str]:
    """What tuner downloads of a repository listing ``names``: config, tokenizer files,
    the weights of ``weight_files`` and sentence-transformers' pooling configuration."""
    names = list(names)
    wanted = [
        n
        for n in names
        if n == CONFIG_FILE or n in TOKENIZER_FILES or n in _SENTENCE_TRANSFORMERS or _POOLING_CONFIG.match(n)
    ]
    return sorted(set(wanted + weight_files(names)))


# --- names ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HubId:
    repo_id: str  # "org/name"
    revision: str | None  # branch, tag or commit as typed; None: the default branch

    def __str__(self) -> str:
        return self.repo_id if self.revision is None else f"{self.repo_id}@{self.revision}"


def parse_hub_id(name: str) -> HubId | None:
    """``org/name`` or ``org/name@revision`` (branch, tag, commit, ``refs/pr/1``);
    None when ``name`` cannot be a hub id."""
    repo_id, at, revision = name.strip().partition("@")
    if not _REPO_ID.match(repo_id) or "--" in repo_id or ".." in repo_id or repo_id.endswith((".", "-")):
        return None
    if at and not revision.strip():
        return None
    return HubId(repo_id, revision.strip() or None)


# --- the local cache -------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    folder: Path  # snapshots/<commit> in the Hugging Face cache
    commit: str  # the resolved revision


def cache_dir(override: str | Path | None = None) -> Path:
    """The Hugging Face hub cache (``HF_HUB_CACHE``, ``HF_HOME``/hub, or ~/.cache/huggingface/hub)."""
    if override is not None:
        return Path(override).expanduser()
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE).expanduser()


def _repo_folder(hub_id: HubId, cache: Path) -> Path:
    return cache / ("models--" + hub_id.repo_id.replace("/", "--"))


def _cached_listing(hub_id: HubId, commit: str, cache: Path) -> dict[str, int | None] | None:
    """The repository's file list at ``commit`` as huggingface_hub cached it before
    downloading (path -> size), or None where it keeps none."""
    try:
        from huggingface_hub import get_cached_repo_tree  # huggingface_hub >= 2.5
    except ImportError:
        return None
    try:
        files = get_cached_repo_tree(hub_id.repo_id, revision=commit, cache_dir=str(cache))
    except Exception:  # CachedRepoTreeNotFoundError, a torn listing: it is only a cross-check
        return None
    return {f.path: f.size for f in files}


def find_cached(hub_id: HubId, cache_dir_override: str | Path | None = None) -> tuple[Snapshot | None, str | None]:
    """The complete cached snapshot of ``hub_id``, without any network: (snapshot, None),
    or (None, why not) where ``why not`` is None when nothing is cached at all.

    Complete means every file ``model_files`` selects is there, at its listed size:
    a download cut short leaves some out, and such a snapshot is never trusted.
    """
    cache = cache_dir(cache_dir_override)
    repo = _repo_folder(hub_id, cache)
    revision = hub_id.revision or "main"
    commit: str | None = revision if _COMMIT.match(revision) else None
    if commit is None:
        try:
            commit = (repo / "refs" / revision).read_text().strip()
        except (OSError, ValueError):
            return None, None
    folder = repo / "snapshots" / commit
    if not folder.is_dir():
        return None, None
    listing = _cached_listing(hub_id, commit, cache)
    present = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    expected = model_files(listing if listing is not None else present)
    missing = [n for n in expected if not (folder / n).is_file()]
    if listing is None:  # no listing to compare with: at least a config and weights
        missing += [n for n in (CONFIG_FILE,) if n not in present] + ([] if weight_files(present) else ["weights"])
    if listing is not None:
        missing += [
            n
            for n in expected
            if n not in missing and listing.get(n) is not None and (folder / n).stat().st_size != listing[n]
        ]
    if missing:
        return None, f"its cached copy (revision {commit[:12]}) is incomplete: {', '.join(missing)} missing"
    return Snapshot(folder, commit), None


def verify_blobs(snapshot: Snapshot, digests: dict[str, str]) -> None:
    """Check each downloaded file against the sha256 its cache blob is named after
    (large files are stored under their LFS sha256); a mismatch removes the file, so no
    later run trusts it, and raises."""
    for name, digest in digests.items():
        pointer = snapshot.folder / name
        blob = pointer.resolve()
        if pointer.is_symlink() and _SHA256.match(blob.name) and blob.name != digest:
            for path in (pointer, blob):
                try:
                    path.unlink()
                except OSError:
                    pass
            raise ModelDownloadError(
                f"{name} of the cached model at {snapshot.folder} is corrupt (sha256 {digest[:12]}..., expected "
                f"{blob.name[:12]}...); it was removed: run the command again to download it"
            )


# --- downloading -------------------------------------------------------------------------


def offline() -> bool:
    """``HF_HUB_OFFLINE=1`` (or ``TRANSFORMERS_OFFLINE``): the hub must not be contacted."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def endpoint() -> str:
    """The hub's address: ``HF_ENDPOINT`` (a mirror) or huggingface.co, read now, not
    when huggingface_hub was imported."""
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def download(
    hub_id: HubId,
    cache_dir_override: str | Path | None = None,
    *,
    progress: bool = True,
    check_config: Callable[[dict[str, Any], str], None] | None = None,
) -> Snapshot:
    """Download what tuner needs of ``hub_id`` into the Hugging Face cache.

    ``check_config(config, what)`` raises for a model tuner cannot run; it is called
    before the weights are fetched, with the hub's summary of config.json (or the
    file itself where the hub gives none). Every failure is one line: a
    ``HubUnreachableError`` when the hub does not answer, a ``ModelDownloadError`` for
    a missing repository or revision, a gated one, or a download cut short, an
    ``UnsupportedModelError`` for a repository without config or weights.
    """
    if offline():
        raise ModelNotFoundError(
            f"model {str(hub_id)!r} is not in the Hugging Face cache, and HF_HUB_OFFLINE=1 forbids downloading it; "
            "unset HF_HUB_OFFLINE, or pass a local folder"
        )
    from huggingface_hub import HfApi

    cache = cache_dir(cache_dir_override)
    url = endpoint()
    _bound_timeouts()
    api = HfApi(endpoint=url)
    info = _first_contact(
        lambda: api.model_info(hub_id.repo_id, revision=hub_id.revision, files_metadata=True, timeout=_etag_timeout()),
        hub_id,
        url,
    )
    what = f"{hub_id} on {url}"
    listed = {s.rfilename: s.size for s in info.siblings or []}
    if CONFIG_FILE not in listed:
        raise UnsupportedModelError(f"{what} has no config.json: it is not a transformers model; pass another model")
    if not weight_files(listed):
        raise UnsupportedModelError(
            f"{what} has no weights (model.safetensors or pytorch_model.bin) at revision {str(info.sha)[:12]}; "
            "tuner needs PyTorch weights: pass another revision or a local folder"
        )
    if info.gated and not _token():
        raise ModelDownloadError(
            f"{hub_id} is gated: accept its conditions at {url}/{hub_id.repo_id} and set HF_TOKEN to a token of "
            "that account, or pass a local folder"
        )
    files = model_files(listed)
    try:
        if check_config is not None:
            config = info.config if isinstance(info.config, dict) and info.config.get("model_type") else None
            check_config(config if config is not None else _fetch_config(hub_id, info.sha, cache, url), what)
        size = sum(listed.get(f) or 0 for f in files)
        if progress:
            print(
                f"tuner: downloading {hub_id} (revision {str(info.sha)[:12]}, {len(files)} files, "
                f"{size / 1e6:.1f} MB) from {url} into {cache}",
                file=sys.stderr,
                flush=True,
            )
        folder = _snapshot(hub_id, files, cache, url, progress)
    except (ModelNotFoundError, KeyboardInterrupt):
        raise
    except Exception as exc:
        raise _translate(exc, hub_id, url, during="download") from None
    snapshot, problem = find_cached(HubId(hub_id.repo_id, Path(folder).name), cache)
    if snapshot is None:
        raise ModelDownloadError(
            f"the download of {hub_id} from {url} did not complete ({problem}); "
            "run the command again to finish it, or pass a local folder"
        )
    return snapshot


def _snapshot(hub_id: HubId, files: list[str], cache: Path, url: str, progress: bool) -> str:
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    quiet_before = are_progress_bars_disabled()
    if not progress:
        disable_progress_bars()
    try:
        # The revision as typed (not the commit): snapshot_download then records the
        # branch or tag in refs/, where the next run's cache lookup finds it.
        return snapshot_download(
            hub_id.repo_id,
            revision=hub_id.revision,
            cache_dir=str(cache),
            endpoint=url,
            allow_patterns=files,
            etag_timeout=_etag_timeout(),
        )
    finally:
        if not progress and not quiet_before:
            enable_progress_bars()


def _fetch_config(hub_id: HubId, commit: str | None, cache: Path, url: str) -> dict[str, Any]:
    """config.json alone (the hub's summary lacked it): checked before any weights move."""
    import json

    from huggingface_hub import hf_hub_download

    path = hf_hub_download(
        hub_id.repo_id,
        CONFIG_FILE,
        revision=commit or hub_id.revision,
        cache_dir=str(cache),
        endpoint=url,
        etag_timeout=_etag_timeout(),
    )
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UnsupportedModelError(
            f"config.json of {hub_id} on {url} is not JSON ({exc}); pass another model"
        ) from None


def _token() -> str | None:
    from huggingface_hub import get_token

    try:
        return get_token()
    except Exception:  # an unreadable token file is "no token"
        return None


def _etag_timeout() -> float:
    try:
        return float(os.environ.get("HF_HUB_ETAG_TIMEOUT") or READ_TIMEOUT_S)
    except ValueError:
        return READ_TIMEOUT_S


def _read_timeout() -> float:
    values = [READ_TIMEOUT_S, _etag_timeout()]
    try:
        values.append(float(os.environ.get("HF_HUB_DOWNLOAD_TIMEOUT") or 0))
    except ValueError:
        pass
    return max(values)


def _cap_timeouts(request: Any) -> None:
    """httpx request hook: no request waits unbounded (huggingface_hub sends some with
    ``timeout=None``) or longer than the limits, which the user's HF_HUB_ETAG_TIMEOUT /
    HF_HUB_DOWNLOAD_TIMEOUT can raise."""
    limits = {
        "connect": CONNECT_TIMEOUT_S,
        "read": _read_timeout(),
        "write": _read_timeout(),
        "pool": CONNECT_TIMEOUT_S,
    }
    timeout = dict(request.extensions.get("timeout") or {})
    for key, limit in limits.items():
        if timeout.get(key) is None or timeout[key] > limit:
            timeout[key] = limit
    request.extensions = {**request.extensions, "timeout": timeout}


def _bound_timeouts() -> None:
    """Add ``_cap_timeouts`` to huggingface_hub's shared client (once; the client is
    made again after a fork, so this runs before every download)."""
    from huggingface_hub import get_session

    session = get_session()
    hooks = getattr(session, "event_hooks", None)
    if hooks is None:  # not an httpx client: the first contact's deadline still bounds the wait
        return
    if _cap_timeouts not in hooks["request"]:
        session.event_hooks = {**hooks, "request": [*hooks["request"], _cap_timeouts]}


def _first_contact(call: Callable[[], Any], hub_id: HubId, url: str) -> Any:
    """``call()``, the first request to the hub, given at most the deadline: a
    resolver that hangs is not covered by socket timeouts. The thread left behind on
    expiry is a daemon, so it does not keep the process alive."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    import threading  # here: only a download gets here, and `tuner best` imports this module

    deadline = FIRST_CONTACT_DEADLINE_S + max(0.0, _etag_timeout() - READ_TIMEOUT_S)
    thread = threading.Thread(target=run, name="tuner-hub-first-contact", daemon=True)
    thread.start()
    thread.join(deadline)
    if thread.is_alive():
        raise HubUnreachableError(_unreachable(hub_id, url, f"no answer in {deadline:.0f} s"))
    if "error" in outcome:
        raise _translate(outcome["error"], hub_id, url, during="contact") from None
    return outcome["value"]


def _unreachable(hub_id: HubId, url: str, reason: str) -> str:
    return (
        f"cannot reach {url} to download {hub_id} ({reason}); pass a local folder (config.json, weights, "
        "tokenizer), or check the network, HF_ENDPOINT and proxy settings"
    )


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split("\n")[0].split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _transport_errors() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = []
    for module in ("httpx2", "httpx"):  # huggingface_hub 2.x speaks httpx2, 1.x httpx
        try:
            found.append(__import__(module).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(found)


def _translate(exc: BaseException, hub_id: HubId, url: str, during: str) -> ModelNotFoundError:
    """One line for what huggingface_hub raised, naming the fix."""
    from huggingface_hub import errors as hf

    if isinstance(exc, hf.OfflineModeIsEnabled):
        return ModelNotFoundError(
            f"model {str(hub_id)!r} is not in the Hugging Face cache, and huggingface_hub is in "
            "offline mode (HF_HUB_OFFLINE); unset it, or pass a local folder"
        )
    if isinstance(exc, hf.RevisionNotFoundError):
        return ModelDownloadError(
            f"{hub_id.repo_id} has no revision {hub_id.revision!r} on {url}; pass an existing "
            f"branch, tag or commit ({hub_id.repo_id}@main), or a local folder"
        )
    if isinstance(exc, hf.GatedRepoError):
        return ModelDownloadError(
            f"{hub_id} is gated and this token has no access to it: accept its conditions at {url}/{hub_id.repo_id} "
            "and set HF_TOKEN to a token of that account, or pass a local folder"
        )
    if isinstance(exc, hf.RepositoryNotFoundError):
        return ModelDownloadError(
            f"model {hub_id.repo_id!r} is not on {url} (or it is private: set HF_TOKEN); check the name, or pass a "
            "local folder"
        )
    if isinstance(exc, hf.HfHubHTTPError) and exc.response is not None:
        status = exc.response.status_code
        if status == 401:
            return ModelDownloadError(
                f"{url} refused the token in HF_TOKEN for {hub_id} (401); set a valid token, or pass a local folder"
            )
        if status == 403:
            return ModelDownloadError(
                f"{url} forbids access to {hub_id} with this token (403); use a token with "
                "read access, or pass a local folder"
            )
        if status >= 500 and during == "contact":
            return HubUnreachableError(_unreachable(hub_id, url, f"it answered {status}"))
    if during == "contact" and isinstance(exc, (*_transport_errors(), hf.LocalEntryNotFoundError, OSError)):
        return HubUnreachableError(_unreachable(hub_id, url, _first_line(exc)))
    if during == "contact":
        return ModelDownloadError(
            f"{url} gave no usable answer for {hub_id} ({_first_line(exc)}); check HF_ENDPOINT, or pass a local folder"
        )
    return ModelDownloadError(
        f"the download of {hub_id} from {url} was cut short ({type(exc).__name__}: {_first_line(exc)}); run the "
        "command again to finish it (the files already fetched are kept), or pass a local folder"
    )
