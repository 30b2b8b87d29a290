"""`tuner launch`, `tuner best --format shell|env`: a command started from the stored
winner sees its CPU mask, LD_PRELOAD (and the allocator really in place), OpenMP
variables, and nothing the winner leaves unset."""

import json
import os
import subprocess
import sys

import pytest
from cli_helpers import run_tuner

from tuner.hardware import detect
from tuner.hardware.libraries import find

TWO_CPUS = len(os.sched_getaffinity(0)) >= 2
WINNER = {"backend": "torch", "precision": "fp32", "threads": 1, "binding": "taskset", "numa_node": 0,
          "core_order": "last", "allocator": "jemalloc", "malloc_conf": "tuned", "openmp": "intel",
          "kmp_affinity": "compact", "kmp_blocktime": 1}
# What the launched command reports about itself.
CHILD = ("import json, os; from tuner.trial.probe import probe; "
         "print(json.dumps({'pid': os.getpid(), 'probe': probe(), "
         "'tuner': {k: v for k, v in os.environ.items() if k.startswith('TUNER_') and k.endswith(('CONFIG', 'LEN', 'INSTANCE'))}}))")


def tuner(*args, env, timeout=120, check=True):
    return run_tuner(*args, env=env, timeout=timeout, check=check)


def last_core() -> int:
    return max(detect().topology.physical_cpus(set(os.sched_getaffinity(0))))


def assert_winner_applied(seen: dict) -> None:
    probe = seen["probe"]
    assert probe["cpus"] == [last_core()]
    assert probe["malloc"]["kind"] == "jemalloc"
    assert probe["env"]["LD_PRELOAD"] == f"{find('jemalloc')}:{find('iomp5')}"
    assert probe["env"]["MALLOC_CONF"] == "oversize_threshold:1,background_thread:true,metadata_thp:auto"
    assert probe["env"]["KMP_AFFINITY"] == "granularity=fine,compact,1,0"
    assert probe["env"]["KMP_BLOCKTIME"] == "1" and probe["env"]["OMP_NUM_THREADS"] == "1"
    assert "OMP_PROC_BIND" not in probe["env"]  # the stray one in the caller's environment is gone


def test_launch_execs_the_command_under_the_winner(tiny_bert_dir, deploy_env, store_winner):
    db = store_winner(tiny_bert_dir, WINNER)
    env = {**deploy_env, "OMP_PROC_BIND": "spread"}
    proc = subprocess.Popen([sys.executable, "-m", "tuner", "launch", "--model", str(tiny_bert_dir), "--db", db,
                             "--verbose", "--", sys.executable, "-c", CHILD],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    seen = json.loads(out)
    assert seen["pid"] == proc.pid  # exec: the command replaced tuner (taskset execs too)
    assert_winner_applied(seen)
    assert json.loads(seen["tuner"]["TUNER_CONFIG"]) == WINNER and seen["tuner"]["TUNER_SEQ_LEN"] == "16"
    assert f"tuner launch: binding: taskset -c {last_core()}" in err
    assert "tuner launch: LD_PRELOAD=" in err and "tuner launch: unset: OMP_PROC_BIND OMP_PLACES OMP_WAIT_POLICY" in err


def test_best_shell_prefix_is_the_same_launch(tiny_bert_dir, deploy_env, store_winner):
    db = store_winner(tiny_bert_dir, WINNER)
    prefix = tuner("best", "--model", str(tiny_bert_dir), "--db", db, "--format", "shell", env=deploy_env).stdout.strip()
    assert prefix.startswith(f"taskset -c {last_core()} env -u OMP_PROC_BIND -u OMP_PLACES -u OMP_WAIT_POLICY ")
    # Through a shell on purpose: --format shell promises a prefix a shell can run as is.
    out = subprocess.run(f"{prefix} {sys.executable} -c \"{CHILD}\"", shell=True, capture_output=True, text=True,
                         env={**deploy_env, "OMP_PROC_BIND": "spread"}, check=True, timeout=120).stdout
    assert_winner_applied(json.loads(out))
    lines = tuner("best", "--model", str(tiny_bert_dir), "--db", db, "--format", "env", env=deploy_env).stdout
    assert lines.startswith("unset OMP_PROC_BIND OMP_PLACES OMP_WAIT_POLICY\n")
    assert f"export LD_PRELOAD={find('jemalloc')}:{find('iomp5')}\n" in lines


def test_launch_errors_are_one_line(tiny_bert_dir, deploy_env, store_winner):
    db = store_winner(tiny_bert_dir, WINNER)
    missing = tuner("launch", "--model", str(tiny_bert_dir), "--db", db, "--", "no-such-command-xyz",
                    env=deploy_env, check=False)
    assert missing.returncode == 2 and missing.stderr.strip() == "tuner: error: command not found: no-such-command-xyz (not on PATH)"
    empty = tuner("launch", "--model", str(tiny_bert_dir), "--db", db, env=deploy_env, check=False)
    assert empty.returncode == 2 and "put it after --" in empty.stderr
    untuned = tuner("launch", "--model", str(tiny_bert_dir), "--db", db, "--seq-len", "64", "--", "true",
                    env=deploy_env, check=False)
    assert untuned.returncode == 2 and "no tuned configuration" in untuned.stderr


@pytest.mark.skipif(not TWO_CPUS, reason="two instances need two cores")
def test_throughput_winner_launches_every_instance_on_its_slice(tiny_bert_dir, deploy_env, store_winner):
    config = {"backend": "onnxruntime", "precision": "fp32", "graph": "unfused", "instances": 2,
              "binding": "taskset", "numa_node": 0, "core_order": "first", "allocator": "system"}
    db = store_winner(tiny_bert_dir, config, objective="throughput")
    args = ["launch", "--model", str(tiny_bert_dir), "--db", db, "--objective", "throughput"]
    out = tuner(*args, "--", sys.executable, "-c", CHILD, env=deploy_env).stdout
    seen = sorted((json.loads(line) for line in out.splitlines()), key=lambda s: s["tuner"]["TUNER_INSTANCE"])
    cores = detect().topology.physical_cpus(set(os.sched_getaffinity(0)))[:2]
    assert [s["probe"]["cpus"] for s in seen] == [[cores[0]], [cores[1]]]
    assert [s["tuner"]["TUNER_INSTANCE"] for s in seen] == ["0", "1"]
    assert all(s["probe"]["env"]["OMP_NUM_THREADS"] == "1" for s in seen)
    one = json.loads(tuner(*args, "--instance", "1", "--", sys.executable, "-c", CHILD, env=deploy_env).stdout)
    assert one["probe"]["cpus"] == [cores[1]]
    bad = tuner(*args, "--instance", "2", "--", "true", env=deploy_env, check=False)
    assert bad.returncode == 2 and "numbered 0..1" in bad.stderr
