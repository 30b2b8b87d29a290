"""`tuner nightly --install systemd|cron`: units systemd accepts, a crontab line cron
reads, exactly what was written removed, and no root unit that runs a file others
can write."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import run_tuner

from tuner.errors import UserError
from tuner.nightly import install as I

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd = pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (apt: systemd)")


def verify_units(folder: Path, *names: str) -> None:
    done = subprocess.run([SYSTEMD_ANALYZE or "systemd-analyze", "verify", *(str(folder / n) for n in names)],
                          capture_output=True, text=True)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


@pytest.fixture
def user_env(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {**env, "XDG_CONFIG_HOME": str(tmp_path / "config")}


@needs_systemd
def test_user_units_pass_systemd_analyze_and_uninstall_removes_exactly_them(user_env, tmp_path: Path) -> None:
    config = tmp_path / "nightly.toml"
    config.write_text('trials = 5\n')
    printed = run_tuner("nightly", "--install", "systemd", "--user", "--print", "--at", "04:30", "--budget", "1h",
                        "--config", str(config), env=user_env).stdout
    units = tmp_path / "config" / "systemd" / "user"
    assert not units.exists()  # --print writes nothing
    assert "Type=oneshot" in printed and "OnCalendar=*-*-* 04:30:00" in printed and "Persistent=true" in printed
    assert "RandomizedDelaySec=" in printed and "systemctl --user enable --now tuner-nightly.timer" in printed

    done = run_tuner("nightly", "--install", "systemd", "--user", "--at", "04:30", "--budget", "1h",
                     "--config", str(config), env=user_env).stdout
    assert "enable --now tuner-nightly.timer" in done
    service = (units / "tuner-nightly.service").read_text()
    exec_start = next(line for line in service.splitlines() if line.startswith("ExecStart="))
    words = exec_start.removeprefix("ExecStart=").split()
    assert Path(words[0]).is_absolute() and "nightly" in words
    db = Path(user_env["TUNER_DATA_DIR"]) / "tuner.db"
    assert words[words.index("--db") + 1] == f"sqlite:///{db}"
    assert words[words.index("--config") + 1] == str(config) and words[words.index("--budget") + 1] == "1h"
    assert f"Environment=TUNER_LOCK_FILE={user_env['TUNER_LOCK_FILE']}" in service
    verify_units(units, "tuner-nightly.service", "tuner-nightly.timer")

    # Enabled: uninstall refuses and names the command that disables it.
    wants = units / "timers.target.wants"
    wants.mkdir()
    (wants / "tuner-nightly.timer").symlink_to(units / "tuner-nightly.timer")
    refused = run_tuner("nightly", "--uninstall", env=user_env, check=False)
    assert refused.returncode == 2 and "systemctl --user disable --now tuner-nightly.timer" in refused.stderr
    (wants / "tuner-nightly.timer").unlink()

    mine = units / "my-own.service"
    mine.write_text("[Service]\nExecStart=/bin/true\n")
    (units / "tuner-nightly.timer").write_text((units / "tuner-nightly.timer").read_text() + "# edited\n")
    removed = run_tuner("nightly", "--uninstall", env=user_env).stdout
    assert f"removed {units / 'tuner-nightly.service'}" in removed
    assert "left" in removed and "it changed since it was written" in removed
    assert sorted(p.name for p in units.iterdir()) == ["my-own.service", "timers.target.wants", "tuner-nightly.timer"]


@needs_systemd
def test_system_units_pass_systemd_analyze(tmp_path: Path) -> None:
    argv = I.nightly_argv(f"sqlite:///{tmp_path}/my data/100% tuner.db", ["--budget", "1h"])
    units = I.systemd_units(argv, {"TUNER_CACHE_DIR": str(tmp_path / "a cache")}, 3, 0, user=False)
    for name, text in units.items():
        (tmp_path / name).write_text(text)
    verify_units(tmp_path, *units)
    assert '"sqlite:///' in units["tuner-nightly.service"] and "100%% tuner.db" in units["tuner-nightly.service"]


def test_a_root_unit_that_runs_a_file_others_can_write_is_refused(tmp_path: Path, monkeypatch) -> None:
    shared = tmp_path / "shared-bin"
    shared.mkdir()
    shared.chmod(0o777)
    (shared / "python").symlink_to(sys.executable)
    monkeypatch.setattr(sys, "executable", str(shared / "python"))
    with pytest.raises(UserError, match=r"refusing .*/shared-bin is writable by its group and others \(mode 777\)"):
        I.plan_install("systemd", False, "03:00", f"sqlite:///{tmp_path}/t.db", [], None)
    with pytest.raises(UserError, match="refusing"):
        I.plan_install("cron", False, "03:00", f"sqlite:///{tmp_path}/t.db", [], None)
    # The user's own units run as the user: not refused.
    assert I.plan_install("systemd", True, "03:00", f"sqlite:///{tmp_path}/t.db", [], None).files
    with pytest.raises(UserError, match="password"):
        I.nightly_argv("postgresql://tuner:secret@db.example/tuner", [])


def test_cron_lines(env: dict[str, str], tmp_path: Path) -> None:
    line = run_tuner("nightly", "--install", "cron", "--user", "--print", "--at", "04:30", env=env).stdout
    entry = next(row for row in line.splitlines() if row and not row.startswith("#"))
    minute, hour, day, month, weekday, command = entry.split(None, 5)
    assert (minute, hour, day, month, weekday) == ("30", "4", "*", "*", "*")
    # The command: variables, then the absolute tuner, `nightly --db URL`, and a log.
    words = command.split()
    tuner = next(w for w in words if "=" not in w)
    assert Path(tuner).is_absolute() and Path(tuner).exists()
    assert "nightly" in words and "--db" in words and ">>" in words and words[-1] == "2>&1"
    system = I.cron_line(["/usr/bin/tuner", "nightly", "--db", "sqlite:////x/100%.db"], {}, 3, 0, Path("/l"), False)
    assert system.startswith("0 3 * * * root /usr/bin/tuner nightly") and "100\\%.db" in system

    bad = run_tuner("nightly", "--install", "cron", "--at", "25:00", env=env, check=False)
    assert bad.returncode == 2 and "--at '25:00' is not a time of day" in bad.stderr
