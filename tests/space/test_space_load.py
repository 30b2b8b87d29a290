"""Loading the real search_spaces/ against the real machine and captured ones:
what is kept, what is pruned and why, conditions, grid and hash."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tuner.errors import UserError
from tuner.hardware import MachineInfo, detect
from tuner.hardware.libraries import find as find_library
from tuner.paths import search_spaces_dir
from tuner.space import Pruned, Space, load_space
from tuner.space.requirements import executable_available, module_available

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cpus"
REPO = Path(__file__).resolve().parents[2]
BF16_REASON = "no avx512_bf16 or amx_bf16 on this CPU"


def machine(name: str) -> MachineInfo:
    return detect(str(FIXTURES / name))


def choices(space: Space, backend: str, name: str) -> tuple[object, ...]:
    return next(d.values() for d in space.dimensions(backend) if d.name == name)


def test_real_machine() -> None:
    host = detect()
    space = load_space(host)
    assert space.backends[0] == "torch"
    assert ("onnxruntime" in space.backends) == module_available("onnxruntime")
    assert choices(space, "torch", "threads") == tuple(range(1, host.physical_cores_available + 1))
    has_bf16 = host.cpu.has("avx512_bf16") or host.cpu.has("amx_bf16") or host.cpu.has("bf16")
    assert ("bf16" in choices(space, "torch", "precision")) == has_bf16
    if host.cpu.arch == "x86_64" and not has_bf16:  # this Skylake-SP
        assert Pruned("precision", "bf16", "torch", BF16_REASON) in space.pruned


def test_sapphire_rapids_keeps_bf16() -> None:
    space = load_space(machine("sapphire_rapids"))
    assert choices(space, "torch", "precision") == ("fp32", "bf16", "int8")
    assert not [p for p in space.pruned if p.choice == "bf16"]


def test_cascade_lake_prunes_bf16_with_reason() -> None:
    space = load_space(machine("cascade_lake_2s"))
    assert choices(space, "torch", "precision") == ("fp32", "int8")
    assert Pruned("precision", "bf16", "torch", BF16_REASON) in space.pruned
    assert choices(space, "torch", "threads") == tuple(range(1, 9))  # 8 physical cores, not 16 CPUs


@pytest.mark.parametrize("name", ["zen4", "graviton3"])
def test_native_bf16_elsewhere(name: str) -> None:
    space = load_space(machine(name))
    assert choices(space, "torch", "precision") == ("fp32", "bf16", "int8")


def test_threads_follow_affinity(tmp_path: Path) -> None:
    root = tmp_path / "clx"
    shutil.copytree(FIXTURES / "cascade_lake_2s", root)
    (root / "proc" / "self").mkdir()
    (root / "proc" / "self" / "status").write_text("Cpus_allowed_list:\t0-1,8-9\n")
    space = load_space(detect(str(root)))
    assert choices(space, "onnxruntime", "threads") == (1, 2)
    assert space.default_config()["threads"] == 2


def test_conditions() -> None:
    space = load_space(machine("cascade_lake_2s"), backends=["torch", "onnxruntime"])
    seen = set()
    for config in space.configs():
        int8 = config.get("precision") == "int8" and config["backend"] == "onnxruntime"
        for key in ("quant_granularity", "reduce_range"):
            assert (key in config) == int8, config
        seen.add((config["backend"], config["precision"]))
    assert seen == {("torch", "fp32"), ("torch", "int8"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")}


def test_default_config() -> None:
    host = detect()
    space = load_space(host)
    assert space.default_config() == {
        "backend": "torch", "precision": "fp32", "threads": host.physical_cores_available, "binding": "none",
        "allocator": "system", "openmp": "gnu", "omp_proc_bind": "unset", "omp_places": "unset",
        "omp_wait_policy": "unset",
    }
    assert space.validate(space.default_config()) == space.default_config()


def test_size_and_configs_agree() -> None:
    space = load_space(machine("cascade_lake_2s"), backends=["torch", "onnxruntime"])
    configs = list(space.configs())
    assert space.size() == len(configs)
    assert len({tuple(sorted(c.items())) for c in configs}) == len(configs)  # all distinct
    for config in configs:
        space.validate(config)
    # Two NUMA nodes: taskset x numa_node 0/1 x core_order first/last, numactl x the same
    # x membind/localalloc.
    bindings = 1 + executable_available("taskset") * 2 * 2 + executable_available("numactl") * 2 * 2 * 2
    # system, jemalloc x 3 MALLOC_CONFs, tcmalloc (those installed here).
    allocators = 1 + (find_library("jemalloc") is not None) * 3 + (find_library("tcmalloc") is not None)
    # torch only: gnu x 3 OMP_PROC_BIND x 3 OMP_PLACES x 3 OMP_WAIT_POLICY, intel x 3 KMP_AFFINITY x 3 KMP_BLOCKTIME.
    openmp = 27 + (find_library("iomp5") is not None) * 9
    # torch: fp32/int8 x 8 threads. ORT: 2 graphs x (fp32 + int8 dynamic x 2 granularities
    # x 2 ranges + int8 static x 2 x 2 x 2 ffn_down) x 8 threads, times its session knobs:
    # 4 optimization levels x 8 inter-op thread counts x spinning on/off (int8_kernel keeps
    # u8s8 alone on this CPU with VNNI).
    ort = 2 * (1 + 2 * 2 + 2 * 2 * 2) * 8 * (4 * 8 * 2)
    assert space.size() == (2 * 8 * openmp + ort) * bindings * allocators


def test_backend_filter() -> None:
    space = load_space(detect(), backends=["onnxruntime"])
    assert space.backends == ["onnxruntime"]
    assert space.default_config()["backend"] == "onnxruntime"
    with pytest.raises(UserError, match="unknown backend 'tensorrt'"):
        load_space(detect(), backends=["tensorrt"])


def test_content_hash() -> None:
    a, b = load_space(machine("cascade_lake_2s")), load_space(machine("cascade_lake_2s"))
    assert a.content_hash() == b.content_hash()
    assert a.content_hash() != load_space(machine("sapphire_rapids")).content_hash()


def _copy_spaces(tmp_path: Path) -> Path:
    directory = tmp_path / "spaces"
    shutil.copytree(search_spaces_dir(), directory)
    return directory


def test_content_hash_ignores_help_text(tmp_path: Path) -> None:
    directory = _copy_spaces(tmp_path)
    host = machine("zen4")
    before = load_space(host, directory).content_hash()
    path = directory / "torch.toml"
    path.write_text(path.read_text().replace('help = "fp32;', 'help = "Precision. fp32;'))
    assert load_space(host, directory).content_hash() == before
    common = directory / "common.toml"
    common.write_text(common.read_text().replace("low = 1\n", "low = 2\n"))  # threads 2..8
    assert load_space(host, directory).content_hash() != before


def test_missing_module_prunes_the_backend(tmp_path: Path) -> None:
    directory = _copy_spaces(tmp_path)
    (directory / "fakert.toml").write_text(
        'format = 1\n[requires]\nmodules = ["tuner_no_such_module"]\n'
        '[dimensions.precision]\nhelp = "x"\nchoices = ["fp32"]\ndefault = "fp32"\n'
    )
    space = load_space(detect(), directory)
    assert "fakert" not in space.backends
    assert Pruned("backend", "fakert", "fakert", "python module tuner_no_such_module is not installed") in space.pruned


def test_missing_executable_and_gpu_prune_choices(tmp_path: Path) -> None:
    directory = _copy_spaces(tmp_path)
    path = directory / "common.toml"
    path.write_text(
        path.read_text().replace('choices = ["none", "taskset", "numactl"]',
                                 'choices = ["none", "taskset", "numactl", "hwloc", "gpu"]')
        + '\n[dimensions.binding.requires.hwloc]\nexecutables = ["tuner-no-such-exe"]\n'
        + '\n[dimensions.binding.requires.gpu]\ngpu = true\n'
    )
    host = machine("zen4")  # a captured machine: no GPU
    space = load_space(host, directory)
    assert Pruned("binding", "hwloc", None, "executable tuner-no-such-exe not found on PATH") in space.pruned
    assert host.gpu_note is not None
    assert Pruned("binding", "gpu", None, host.gpu_note) in space.pruned
    assert "hwloc" not in choices(space, "torch", "binding")


def test_nothing_left_is_a_user_error(tmp_path: Path) -> None:
    directory = _copy_spaces(tmp_path)
    for path in directory.glob("*.toml"):
        if path.stem == "common":
            continue
        # Every backend's [requires] gets isa_any = ["amx_int8"] (replacing its own isa_any).
        head, _, rest = path.read_text().partition("[requires]\n")
        block, nxt, tail = rest.partition("\n[")
        kept = [line for line in block.splitlines() if not line.startswith("isa_any")]
        block = "\n".join(['isa_any = ["amx_int8"]', *kept])
        path.write_text(f"{head}[requires]\n{block}{nxt}{tail}" if rest else f'{head}\n[requires]\nisa_any = ["amx_int8"]\n')
    with pytest.raises(UserError, match="no backend can run on this machine") as info:
        load_space(machine("cascade_lake_2s"), directory)
    assert "no amx_int8 on this CPU" in str(info.value) and "\n" not in str(info.value)


def test_module_available_never_imports() -> None:
    assert module_available("onnxruntime.quantization") == module_available("onnxruntime")
    assert not module_available("onnxruntime.no_such_submodule")
    assert not module_available("tuner_no_such_module.sub")
    code = (
        "import sys; from tuner.hardware import detect; from tuner.space import load_space; "
        "load_space(detect()); "
        "print(','.join(m for m in ('torch', 'onnxruntime', 'onnx', 'transformers', 'optuna') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_condition_on_backend(tmp_path: Path) -> None:
    directory = _copy_spaces(tmp_path)
    path = directory / "common.toml"
    path.write_text(
        path.read_text()
        + '\n[dimensions.runtime_x]\nhelp = "OpenMP runtime"\nchoices = ["gomp", "iomp"]\ndefault = "gomp"\n'
        + 'when = { backend = "torch" }\n'
    )
    space = load_space(machine("zen4"), directory)
    for config in space.configs():
        assert ("runtime_x" in config) == (config["backend"] == "torch")
    assert space.default_config()["runtime_x"] == "gomp"
    with pytest.raises(UserError, match=r"runtime_x does not apply to backend onnxruntime \(only to torch\); remove it"):
        space.validate({"backend": "onnxruntime", "precision": "fp32", "graph": "fused", "threads": 1,
                        "binding": "none", "allocator": "system", "runtime_x": "gomp"})
