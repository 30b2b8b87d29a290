"""Downloads from the hub, for real, against the loopback hub (tests/hub/hub_server.py):
what is fetched, what the cache then answers with no network, and every failure in
one line with nothing left behind that a later run would trust."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import REPO
from hub_server import LoopbackHub, closed_port

from tuner import hub as H
from tuner.errors import HubUnreachableError, ModelDownloadError, ModelNotFoundError, UnsupportedModelError
from tuner.model import load_tokenizer, load_torch_model, resolve_model


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert message and "\n" not in message, message
    return message


def test_first_download_fetches_what_a_backend_needs_then_the_cache_answers(
    hub: LoopbackHub, online, tiny_bert_dir: Path
) -> None:
    cache = online(hub.url)
    ref = resolve_model(REPO, hf_cache_dir=cache, download=True)
    commit = hub.repos[REPO].commit
    assert ref.revision == commit and Path(ref.path).name == commit
    assert ref.task == "embedding"
    # Config, weights (safetensors, not the .bin beside them), tokenizer, pooling config; no README, no ONNX.
    assert _files(Path(ref.path)) == {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                                      "special_tokens_map.json", "vocab.txt", "modules.json", "1_Pooling/config.json"}
    assert not any(path.endswith("pytorch_model.bin") for _, path in hub.api_requests())
    # The standard cache layout: snapshot links into blobs, a ref for the branch.
    assert (Path(ref.path) / "model.safetensors").is_symlink()
    assert (cache / "models--org--tiny-bert" / "refs" / "main").read_text().strip() == commit
    # The same model from a folder or the hub: the same content hash (artifacts and results are shared).
    assert ref.content_hash == resolve_model(str(tiny_bert_dir)).content_hash
    assert load_torch_model(ref).config.hidden_size == 32
    assert load_tokenizer(ref)("hello world")["input_ids"][0] == 101

    # Again: everything from the cache, not one request; then with the hub gone.
    before = len(hub.api_requests())
    assert resolve_model(REPO, hf_cache_dir=cache, download=True) == ref
    assert len(hub.api_requests()) == before
    hub.stop()
    assert resolve_model(REPO, hf_cache_dir=cache, download=True).content_hash == ref.content_hash
    assert resolve_model(REPO, hf_cache_dir=cache).path == ref.path  # and without permission to download


def test_revisions_tag_commit_and_missing(hub: LoopbackHub, online) -> None:
    cache = online(hub.url)
    commit = hub.repos[REPO].commit
    by_tag = resolve_model(f"{REPO}@v1", hf_cache_dir=cache, download=True)
    assert by_tag.revision == commit and by_tag.model_id == f"{REPO}@v1"
    before = len(hub.api_requests())
    assert resolve_model(f"{REPO}@{commit}", hf_cache_dir=cache, download=True).path == by_tag.path
    assert len(hub.api_requests()) == before  # a commit needs no ref: straight from the cache

    with pytest.raises(ModelDownloadError) as info:
        resolve_model(f"{REPO}@no-such-branch", hf_cache_dir=cache, download=True)
    assert "no revision 'no-such-branch'" in _one_line(info)
    assert not (cache / "models--org--tiny-bert" / "refs" / "no-such-branch").exists()


def test_pickled_weights_when_there_are_no_safetensors(hub: LoopbackHub, online) -> None:
    cache = online(hub.url)
    ref = resolve_model("org/bin-only", hf_cache_dir=cache, download=True)
    assert "pytorch_model.bin" in _files(Path(ref.path))
    assert load_torch_model(ref).config.num_hidden_layers == 1


@pytest.mark.parametrize(
    ("model", "error", "words"),
    [
        ("org/missing", ModelDownloadError, ["'org/missing' is not on", "HF_TOKEN", "local folder"]),  # 404
        ("org/private", ModelDownloadError, ["'org/private' is not on", "HF_TOKEN"]),  # 401 to an anonymous caller
        ("org/gated", ModelDownloadError, ["is gated", "HF_TOKEN"]),  # gated in its model info: refused before a file
        ("org/no-weights", UnsupportedModelError, ["has no weights", "model.safetensors or pytorch_model.bin"]),
        ("org/gpt2", UnsupportedModelError, ["gpt2 model", "GPT2LMHeadModel", "encoder models"]),
    ],
)
def test_each_refusal_is_one_line_and_leaves_nothing_trusted(
    hub: LoopbackHub, online, model: str, error: type, words: list[str]
) -> None:
    cache = online(hub.url)
    with pytest.raises(error) as info:
        resolve_model(model, hf_cache_dir=cache, download=True)
    message = _one_line(info)
    assert all(w in message for w in words), message
    assert not any(path.startswith("/cdn/") for _, path in hub.api_requests())  # no weights moved
    assert H.find_cached(H.parse_hub_id(model), cache)[0] is None
    with pytest.raises(ModelNotFoundError):
        resolve_model(model, hf_cache_dir=cache)


def test_tokens_for_gated_and_private_models(hub: LoopbackHub, online, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = online(hub.url)
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    with pytest.raises(ModelDownloadError) as info:  # the files answer 403 GatedRepo
        resolve_model("org/gated", hf_cache_dir=cache, download=True)
    assert "gated" in _one_line(info) and "no access" in str(info.value)
    assert H.find_cached(H.parse_hub_id("org/gated"), cache)[0] is None

    monkeypatch.setenv("HF_TOKEN", "hf_good")
    assert resolve_model("org/gated", hf_cache_dir=cache, download=True).revision == hub.repos["org/gated"].commit
    assert resolve_model("org/private", hf_cache_dir=cache, download=True).task == "embedding"
    auth = [p for m, p in hub.api_requests() if p.startswith("/cdn/")]
    assert auth, "the weights came from the CDN host"


def test_hf_hub_offline_is_honoured(hub: LoopbackHub, online, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = online(hub.url)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model(REPO, hf_cache_dir=cache, download=True)
    assert "HF_HUB_OFFLINE" in _one_line(info)
    assert hub.api_requests() == []

    monkeypatch.delenv("HF_HUB_OFFLINE")
    ref = resolve_model(REPO, hf_cache_dir=cache, download=True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = len(hub.api_requests())
    assert resolve_model(REPO, hf_cache_dir=cache, download=True) == ref  # cached: offline is fine
    assert len(hub.api_requests()) == before


def test_a_server_killed_mid_download_then_the_next_run_completes(
    hub: LoopbackHub, online, tiny_bert_dir: Path
) -> None:
    cache = online(hub.url)
    hub.cut_after["model.safetensors"] = 64 * 1024  # of about 4 MB
    start = time.monotonic()
    with pytest.raises(ModelDownloadError) as info:
        resolve_model(REPO, hf_cache_dir=cache, download=True)
    elapsed = time.monotonic() - start
    message = _one_line(info)
    assert "cut short" in message and "run the command again" in message, message
    assert elapsed < 60, elapsed

    # What is on disk is not trusted: no partial blob, a snapshot without its weights.
    repo = cache / "models--org--tiny-bert"
    assert not list(repo.glob("blobs/*.incomplete"))
    snapshot, problem = H.find_cached(H.parse_hub_id(REPO), cache)
    assert snapshot is None and "model.safetensors" in problem
    with pytest.raises(ModelNotFoundError, match="incomplete"):
        resolve_model(REPO, hf_cache_dir=cache)

    hub.start()  # the same port again
    ref = resolve_model(REPO, hf_cache_dir=cache, download=True)
    assert ref.content_hash == resolve_model(str(tiny_bert_dir)).content_hash


def test_a_corrupt_blob_is_removed_and_fetched_again(hub: LoopbackHub, online) -> None:
    cache = online(hub.url)
    ref = resolve_model(REPO, hf_cache_dir=cache, download=True)
    blob = (Path(ref.path) / "model.safetensors").resolve()
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xFF  # same size: only the sha256 tells
    blob.write_bytes(bytes(data))
    with pytest.raises(ModelDownloadError) as info:
        resolve_model(REPO, hf_cache_dir=cache, download=True)
    assert "corrupt" in _one_line(info) and not blob.exists()
    assert resolve_model(REPO, hf_cache_dir=cache, download=True).content_hash == ref.content_hash


def test_a_closed_port_fails_at_once_naming_a_local_folder(online) -> None:
    cache = online(f"http://127.0.0.1:{closed_port()}")
    start = time.monotonic()
    with pytest.raises(HubUnreachableError) as info:
        resolve_model("philschmid/MiniLM-L6-H384-uncased-sst2", hf_cache_dir=cache, download=True)
    assert time.monotonic() - start < 5
    message = _one_line(info)
    assert "cannot reach" in message and "local folder" in message


def test_hub_ids_and_the_files_a_repository_gives() -> None:
    assert H.parse_hub_id("org/name") == H.HubId("org/name", None)
    assert H.parse_hub_id("org/name@v1.0") == H.HubId("org/name", "v1.0")
    assert H.parse_hub_id("org/name@refs/pr/3") == H.HubId("org/name", "refs/pr/3")
    assert H.parse_hub_id("bert-base-uncased") == H.HubId("bert-base-uncased", None)
    for bad in ("a/b/c", "org/name@", "org--x/y", "/abs/path", "./rel", "org/na me", ""):
        assert H.parse_hub_id(bad) is None, bad

    listing = ["config.json", "model.safetensors", "pytorch_model.bin", "training_args.bin", "tf_model.h5",
               "vocab.txt", "tokenizer.json", "README.md", "onnx/model.onnx", "modules.json", "1_Pooling/config.json",
               "2_Dense/model.safetensors", "sentence_bert_config.json"]
    assert H.model_files(listing) == sorted(["config.json", "model.safetensors", "vocab.txt", "tokenizer.json",
                                             "modules.json", "1_Pooling/config.json", "sentence_bert_config.json"])
    assert H.weight_files(["config.json", "pytorch_model.bin", "training_args.bin"]) == ["pytorch_model.bin"]
    shards = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json",
              "pytorch_model-00001-of-00002.bin", "pytorch_model.bin.index.json"]
    assert H.weight_files(shards) == shards[:3]
    assert H.weight_files(["config.json", "model.onnx", "tf_model.h5"]) == []
