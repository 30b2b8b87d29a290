"""Bad input is refused at once, in one line, creating nothing (issue 16, items 5 and
8): every numeric option is checked when the command line is parsed; a study is what
decides a trial's verdict, so a changed guard starts a new study (and says so) while
the same command resumes; every option has a help text; the exit codes are listed;
`--space FILE` reads the user's space files, with the same one-line errors."""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import pytest
from fault_helpers import FAST, MODEL, SPACE, counted, db_path, one_line_error, query, run

README = Path(__file__).resolve().parents[2] / "README.md"

BAD = [
    ["auto", "--model", MODEL, "--budget", "0"],
    ["auto", "--model", MODEL, "--budget", "soon"],
    ["auto", "--model", MODEL, "--min-cosine", "5"],
    ["auto", "--model", MODEL, "--min-cosine-min", "-0.1"],
    ["auto", "--model", MODEL, "--min-label-agreement", "1.5"],
    ["auto", "--model", MODEL, "--trial-timeout", "-1"],
    ["auto", "--model", MODEL, "--trial-timeout", "nan"],
    ["auto", "--model", MODEL, "--trials", "0"],
    ["auto", "--model", MODEL, "--batch", "0"],
    ["auto", "--model", MODEL, "--seq-len", "0"],
    ["auto", "--model", MODEL, "--seq-len", "16,x"],
    ["auto", "--model", MODEL, "--finalists", "-1"],
    ["auto", "--model", MODEL, "--finalist-rounds", "2"],
    ["auto", "--model", MODEL, "--prune-margin", "0"],
    ["auto", "--model", MODEL, "--skip-dominated", "1"],
    ["auto", "--model", MODEL, "--noise-retries", "-1"],
    ["auto", "--model", MODEL, "--noise-wait", "-1"],
    ["auto", "--model", MODEL, "--min-time", "0"],
    ["auto", "--model", MODEL, "--max-memory", "0"],
    ["auto", "--model", MODEL, "--max-memory", "lots"],
    ["auto", "--model", MODEL, "--objective", "p42"],
    ["best", "--model", MODEL, "--seq-len", "0"],
    ["best", "--model", MODEL, "--batch", "-1"],
    ["launch", "--model", MODEL, "--instance", "-1", "--", "true"],
    ["export", "--model", MODEL, "--out", "x", "--seq-len", "-16"],
    ["history", "--seq-len", "0"],
    ["verify", "--model", MODEL, "--rounds", "2"],
    ["verify", "--model", MODEL, "--min-time", "-1"],
    ["measure", "--model", MODEL, "--seq-len", "9000"],
    ["measure", "--model", MODEL, "--timeout", "0"],
    ["serve", "--port", "70000"],
    ["nightly", "--budget", "0"],
    ["nightly", "--trials", "0"],
    ["nightly", "--rounds", "2"],
    ["auto"],  # --model missing
]


@pytest.mark.parametrize("argv", BAD, ids=[" ".join(a[0:1] + a[-2:]) for a in BAD])
def test_a_bad_value_is_one_line_at_once_and_creates_nothing(argv, tmp_path, monkeypatch, capsys):
    from tuner.cli.main import main

    monkeypatch.setenv("TUNER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TUNER_LOCK_FILE", str(tmp_path / "machine.lock"))
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "error:" in err, err
    assert not (tmp_path / "data").exists() and not (tmp_path / "machine.lock").exists()


@pytest.mark.slow
def test_the_issues_values_exit_2_at_once(env):
    for value in (["--budget", "0"], ["--min-cosine", "5"], ["--trial-timeout", "-1"]):
        started = time.monotonic()
        line = one_line_error(run("auto", *FAST, *value, env=env, check=False))
        assert value[0] in line, line
        assert time.monotonic() - started < 15  # before any reference run or trial
    assert not db_path(env).exists()


def test_every_option_has_a_help_text():
    from tuner.cli.main import build_parser

    missing = []

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, subparser in action.choices.items():
                    walk(subparser, f"{name} {sub}")
            elif not action.help and action.dest != "help":
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")

    walk(build_parser(), "tuner")
    assert not missing, f"options without a help text: {missing}"


def test_the_exit_codes_are_listed_in_help_and_readme(capsys):
    from tuner.cli.main import main

    with pytest.raises(SystemExit):
        main(["--help"])
    shown = capsys.readouterr().out
    readme = README.read_text()
    for code in ("0", "1", "2", "3", "130"):
        assert re.search(rf"^\s+{code}\s+\S", shown, re.MULTILINE), shown
        assert re.search(rf"^\| `?{code}`? \|", readme, re.MULTILINE), f"README has no row for exit code {code}"


@pytest.mark.parametrize("text, words", [
    ("[dimensions.precision\n", "invalid TOML"),
    ('[dimensions.precision]\nchoices = "fp32"\n', "needs choices"),
    ('[dimensions.graph]\nwhen = { nothing = "x" }\n', "unknown dimension 'nothing'"),
    ("[dimensions.threads]\nlow = 0\nhigh = -1\n", "threads"),
    ("format = 2\n", "format = 2"),
])
def test_a_malformed_space_file_is_one_line(text, words, tmp_path, capsys, monkeypatch):
    from tuner.cli.main import main

    monkeypatch.setenv("TUNER_DATA_DIR", str(tmp_path / "data"))
    own = tmp_path / ("common.toml" if "threads" in text else "onnxruntime.toml")
    own.write_text(text)
    assert main(["space", "--model", MODEL, "--space", str(own)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(own) in err and words in err, err
    assert not (tmp_path / "data").exists()


@pytest.mark.slow
def test_a_changed_guard_starts_a_new_study_and_the_same_command_resumes(env):
    first = ["auto", *FAST, "--trials", "1"]
    run(*first, env=env)
    stricter = run(*first, "--min-cosine", "0.995", env=env)
    assert re.search(r"seq 16: a new study \d+, as the accuracy guard .*0\.995.* differ", stricter.stderr), \
        stricter.stderr
    assert len(query(db_path(env), "SELECT id FROM tuner_studies")) == 2
    again = run("auto", *FAST, "--trials", "2", env=env)
    assert re.search(r"seq 16: resuming study 1 \(1 trial stored", again.stderr), again.stderr
    per_study = dict(query(db_path(env), "SELECT study_id, count(*) FROM tuner_trials GROUP BY study_id"))
    assert per_study == {1: 2, 2: 1}, per_study
    # Every configuration measured is one of the --space file's (fp32, or dynamic int8 of the unfused graph).
    assert all(c.get("graph") == "unfused" and c.get("quantization", "dynamic") == "dynamic"
               for c in counted(db_path(env))), counted(db_path(env))
    assert SPACE.name == "onnxruntime.toml"
