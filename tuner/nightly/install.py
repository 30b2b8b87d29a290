"""`tuner nightly --install systemd|cron`: run `tuner nightly` every night.

systemd: a ``Type=oneshot`` service whose ExecStart is this tuner (absolute path) with
its ``--db``, and a timer (``OnCalendar``, ``RandomizedDelaySec``, ``Persistent=true``:
a night missed while the machine was off runs at the next boot), in the system unit
folder or, with ``--user``, the user's. cron: a line in /etc/cron.d, or with
``--user`` in the user's crontab. Nothing is enabled: the command that does it is
printed. What was written is listed in a manifest in the data folder, and
``--uninstall`` removes exactly that (a file changed since is left, and said so).

A root unit runs as root every night, so it must not run a file another user can
change: the tuner's interpreter, its script and its package files, the config file,
and every folder above them must be root's and writable by no one else; otherwise
the install is refused, naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner.errors import UserError

UNIT = "tuner-nightly"
MARKER = "# Written by `tuner nightly --install`; `tuner nightly --uninstall` removes it."
CRON_MARKER = "# tuner nightly (tuner nightly --install cron; --uninstall removes it)"
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
CRON_D = Path("/etc/cron.d/tuner-nightly")
RANDOMIZED_DELAY = "30min"
# Variables that decide where a run finds its model, cache, lock and space files: kept
# in the unit as they are set where it is installed.
CARRIED_ENV = (
    "TUNER_DATA_DIR",
    "TUNER_CACHE_DIR",
    "TUNER_LOCK_FILE",
    "TUNER_SPACE_DIR",
    "XDG_DATA_HOME",
    "XDG_CACHE_HOME",
    "HF_HOME",
    "HF_HUB_CACHE",
    "HF_HUB_OFFLINE",
)
_AT = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


@dataclass
class Installation:
    kind: str  # "systemd" or "cron"
    user: bool
    files: dict[Path, str] = field(default_factory=dict)  # path -> content
    cron_line: str | None = None  # --user cron: the line for the user's crontab
    enable: str = ""  # the command that enables it, printed


def parse_at(text: str) -> tuple[int, int]:
    match = _AT.match(text.strip())
    if not match:
        raise UserError(f"--at {text!r} is not a time of day; use HH:MM, e.g. 03:00")
    return int(match.group(1)), int(match.group(2))


def tuner_command() -> list[str]:
    """This tuner, as an absolute command: its console script beside the interpreter
    when there is one, else ``python -m tuner``."""
    python = Path(sys.executable).absolute()
    script = python.parent / "tuner"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [str(python), "-m", "tuner"]


def nightly_argv(db_url: str, options: list[str]) -> list[str]:
    from sqlalchemy.engine import make_url

    if make_url(db_url).password:
        raise UserError(
            "the database URL carries a password, which the unit or crontab would show to anyone "
            "who can read it; keep the password in ~/.pgpass (PostgreSQL) and pass --db without it"
        )
    return [*tuner_command(), "nightly", "--db", db_url, *options]


def carried_env() -> dict[str, str]:
    return {name: os.environ[name] for name in CARRIED_ENV if os.environ.get(name)}


# -- systemd ------------------------------------------------------------------------


def _systemd_word(word: str) -> str:
    """One ExecStart/Environment word as systemd reads it: % and $ doubled, quoted when needed."""
    word = word.replace("%", "%%").replace("$", "$$")
    if word and not re.search(r"[\s\"'\\;]", word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_units(argv: list[str], env: dict[str, str], hour: int, minute: int, user: bool) -> dict[str, str]:
    """{"tuner-nightly.service": ..., "tuner-nightly.timer": ...}."""
    environment = "".join(f"Environment={_systemd_word(f'{k}={v}')}\n" for k, v in sorted(env.items()))
    service = (
        f"{MARKER}\n"
        "[Unit]\n"
        "Description=tuner nightly: re-tune the winners that hardware or software changes made stale\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"ExecStart={' '.join(_systemd_word(a) for a in argv)}\n"
        f"{environment}"
        # Exit 3 (a winner got slower, a verify failed) marks the run failed: a scheduler's
        # OnFailure= or `systemctl --failed` shows it.
    )
    timer = (
        f"{MARKER}\n"
        "[Unit]\n"
        f"Description=Run tuner nightly every day at {hour:02d}:{minute:02d}\n"
        "\n"
        "[Timer]\n"
        f"OnCalendar=*-*-* {hour:02d}:{minute:02d}:00\n"
        f"RandomizedDelaySec={RANDOMIZED_DELAY}\n"
        "Persistent=true\n"
        f"Unit={UNIT}.service\n"
        "\n"
        "[Install]\n"
        "WantedBy=timers.target\n"
    )
    return {f"{UNIT}.service": service, f"{UNIT}.timer": timer}


def user_unit_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


# -- cron ---------------------------------------------------------------------------


def cron_line(argv: list[str], env: dict[str, str], hour: int, minute: int, log: Path, user: bool) -> str:
    """``M H * * * [root] VAR=... /path/tuner nightly ... >> LOG 2>&1`` (cron reads % as a newline: escaped)."""
    words = [f"{k}={shlex.quote(v)}" for k, v in sorted(env.items())] + [shlex.quote(a) for a in argv]
    command = " ".join(words) + f" >> {shlex.quote(str(log))} 2>&1"
    command = command.replace("%", "\\%")
    return f"{minute} {hour} * * * {'' if user else 'root '}{command}"


# -- the root check -----------------------------------------------------------------


def _others_can_write(path: Path) -> str | None:
    """Why another user than root could change what ``path`` is, or None."""
    try:
        info = path.lstat()
    except OSError as exc:
        return f"{path} cannot be checked: {exc.strerror}"
    if info.st_uid != 0:
        return f"{path} belongs to uid {info.st_uid}, not root"
    if stat.S_ISLNK(info.st_mode):
        return None  # a link's own mode means nothing; its folder and target are checked
    writable = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if writable and not (stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_ISVTX):
        who = (
            "its group and others"
            if writable == (stat.S_IWGRP | stat.S_IWOTH)
            else "its group"
            if writable & stat.S_IWGRP
            else "others"
        )
        return f"{path} is writable by {who} (mode {stat.S_IMODE(info.st_mode):o})"
    return None


def files_run(argv: list[str], config: str | None) -> list[Path]:
    """What a nightly run executes or reads as code: the command, the interpreter (and
    what its links point at), the script's interpreter line, the tuner package's files,
    the config file, and every folder above them."""
    paths: list[Path] = []
    executable = Path(argv[0])
    paths += [executable, executable.resolve(), Path(sys.executable).absolute(), Path(sys.executable).resolve()]
    try:
        first = executable.read_bytes()[:256].split(b"\n", 1)[0]
        if first.startswith(b"#!"):
            interpreter = first[2:].decode(errors="replace").split()[0]
            paths += [Path(interpreter), Path(interpreter).resolve()]
    except OSError:
        pass
    package = Path(__file__).resolve().parents[1]  # the tuner package
    paths += [package, *sorted(p for p in package.rglob("*") if p.suffix in (".py", ".toml"))]
    if config:
        paths.append(Path(config))
    found: dict[Path, None] = {}
    for path in paths:
        for part in [path, *path.parents]:
            found.setdefault(part, None)
    return list(found)


def refusals(paths: list[Path]) -> list[str]:
    return [why for why in (_others_can_write(p) for p in paths) if why]


# -- install / uninstall ------------------------------------------------------------


def manifest_path() -> Path:
    from tuner.paths import data_dir

    return data_dir() / "nightly-install.json"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def plan_install(kind: str, user: bool, at: str, db_url: str, options: list[str], config: str | None) -> Installation:
    """What ``--install`` writes (nothing is written here); UserError when a root unit
    would run a file another user can write."""
    hour, minute = parse_at(at)
    argv = nightly_argv(db_url, options)
    env = carried_env()
    if not user:
        why = refusals(files_run(argv, config))
        if why:
            raise UserError(
                "refusing to write a unit that root runs every night while another user can change "
                f"what it runs: {why[0]}"
                + (f" (and {len(why) - 1} more)" if len(why) > 1 else "")
                + "; install the tuner where only root can write, or use --user"
            )
    if kind == "systemd":
        folder = user_unit_dir() if user else SYSTEM_UNIT_DIR
        units = systemd_units(argv, env, hour, minute, user)
        flag = " --user" if user else ""
        enable = f"systemctl{flag} daemon-reload && systemctl{flag} enable --now {UNIT}.timer"
        if user:
            enable += f"  (and `loginctl enable-linger {os.environ.get('USER', '$USER')}` to run while logged out)"
        return Installation(kind, user, {folder / name: text for name, text in units.items()}, enable=enable)
    from tuner.paths import data_dir

    line = cron_line(argv, env, hour, minute, data_dir() / "nightly.log", user)
    if user:
        return Installation(kind, user, cron_line=line, enable="nothing to enable: cron reads the crontab")
    return Installation(
        kind, user, {CRON_D: f"{MARKER}\nSHELL=/bin/sh\n{line}\n"}, enable="nothing to enable: cron reads /etc/cron.d"
    )


def install(plan: Installation) -> list[str]:
    """Write ``plan`` and add it to the manifest; returns lines saying what was done."""
    done: list[str] = []
    entries = _read_manifest()
    for path, text in plan.files.items():
        if path.exists() and MARKER not in path.read_text(errors="replace"):
            raise UserError(
                f"{path} exists and was not written by `tuner nightly --install`; remove it or move it away"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            path.chmod(0o644)
        except OSError as exc:
            raise UserError(
                f"cannot write {path}: {exc.strerror}"
                + ("; run as root, or install for your user with --user" if not plan.user else "")
            ) from None
        entries = [e for e in entries if e.get("path") != str(path)]
        entries.append({"kind": plan.kind, "path": str(path), "sha256": _digest(text)})
        done.append(f"wrote {path}")
    if plan.cron_line is not None:
        _crontab_write(without_ours(_crontab_read()) + [CRON_MARKER, plan.cron_line])
        entries = [e for e in entries if e.get("kind") != "crontab"]
        entries.append({"kind": "crontab", "line": plan.cron_line})
        done.append("added the line to your crontab")
    _write_manifest(entries)
    return done


def uninstall() -> list[str]:
    """Remove what the manifest lists (a file changed since it was written is left);
    refused while the timer is enabled (its disable command is named)."""
    entries = _read_manifest()
    if not entries:
        return [f"nothing to remove: {manifest_path()} lists nothing `tuner nightly --install` wrote"]
    for entry in entries:
        if entry.get("kind") == "systemd":
            path = Path(entry["path"])
            wanted = path.parent / "timers.target.wants" / path.name
            if path.suffix == ".timer" and wanted.is_symlink():
                flag = "" if path.parent == SYSTEM_UNIT_DIR else " --user"
                raise UserError(
                    f"the timer is enabled ({wanted}); first run `systemctl{flag} disable --now "
                    f"{path.name}`, then `tuner nightly --uninstall` again"
                )
    done, kept = [], []
    for entry in entries:
        if entry.get("kind") == "crontab":
            current = _crontab_read()
            remaining = without_ours(current)
            if remaining != current:
                _crontab_write(remaining)
                done.append("removed the line from your crontab")
            continue
        path = Path(entry["path"])
        if not path.exists():
            done.append(f"{path} was already gone")
            continue
        if _digest(path.read_text(errors="replace")) != entry.get("sha256"):
            done.append(f"left {path}: it changed since it was written")
            kept.append(entry)
            continue
        try:
            path.unlink()
        except OSError as exc:
            raise UserError(f"cannot remove {path}: {exc.strerror}") from None
        done.append(f"removed {path}")
    _write_manifest(kept)
    if any(e.get("kind") == "systemd" for e in entries):
        user = any(e.get("kind") == "systemd" and Path(e["path"]).parent != SYSTEM_UNIT_DIR for e in entries)
        done.append(f"then: systemctl{' --user' if user else ''} daemon-reload")
    return done


def _read_manifest() -> list[dict[str, Any]]:
    try:
        data = json.loads(manifest_path().read_text())
    except (OSError, ValueError):
        return []
    entries = data.get("entries") if isinstance(data, dict) else None
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def _write_manifest(entries: list[dict[str, Any]]) -> None:
    path = manifest_path()
    if not entries:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"entries": entries}, indent=2) + "\n")


def _crontab() -> str:
    found = shutil.which("crontab")
    if found is None:
        raise UserError("no `crontab` command here (install cron), or use --install systemd")
    return found


def _crontab_read() -> list[str]:
    done = subprocess.run([_crontab(), "-l"], capture_output=True, text=True)
    if done.returncode != 0:  # "no crontab for user"
        return []
    return done.stdout.splitlines()


def _crontab_write(lines: list[str]) -> None:
    text = "\n".join(lines) + "\n" if lines else ""
    done = subprocess.run([_crontab(), "-"], input=text, capture_output=True, text=True)
    if done.returncode != 0:
        raise UserError(f"crontab refused the new table: {done.stderr.strip()}")


def without_ours(lines: list[str]) -> list[str]:
    """The crontab without what --install added: each marker line and the line after it."""
    kept: list[str] = []
    skip = False
    for line in lines:
        if skip:
            skip = False
        elif line == CRON_MARKER:
            skip = True
        else:
            kept.append(line)
    return kept
