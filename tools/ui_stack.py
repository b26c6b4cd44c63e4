"""The parts `make ui-check` runs on: Debian's Chromium, and a local stack (its own devstack.py,
or the one `make run` serves).

- `find_chromium()` / `ensure_chromium(install)`: $CHROMIUM, `chromium` on PATH or
  /usr/bin/chromium; with `install`, as root, `apt-get install -y chromium` when missing;
- `own_stack(folder, refuse=...)`: devstack.py with its data in `folder` (wiped first), each port
  from the settings `make run` reads when set and a free one otherwise, its SMTP sink refusing
  the recipients given; stopped on leaving, nothing left behind;
- `running_stack()`: the `make run` of the current directory, through the same settings.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sandbox.smtp_sink import free_port

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_APT = "apt-get install -y chromium"


class StackFailed(Exception):
    """The stack did not come up; the message carries the end of its log."""


# Chromium: Debian's package, never a browser build of Playwright's own.


def find_chromium() -> Path | None:
    """$CHROMIUM when set (and only it: an explicit choice is never replaced), else `chromium`
    on PATH or Debian's /usr/bin/chromium."""
    explicit = os.environ.get("CHROMIUM")
    candidates = [explicit] if explicit else [shutil.which("chromium"), "/usr/bin/chromium"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def ensure_chromium(install: bool) -> Path:
    """Debian's Chromium; with `install` and as root, apt-get installs it when missing."""
    if (found := find_chromium()) is not None:
        return found
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"Chromium is missing: {CHROMIUM_APT}", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if subprocess.run(CHROMIUM_APT.split(), env=env).returncode != 0:
            # A machine whose package lists are stale or empty: refresh them once.
            subprocess.run(["apt-get", "update"], env=env, check=False)
            subprocess.run(CHROMIUM_APT.split(), env=env, check=False)
        if (found := find_chromium()) is not None:
            return found
    where = (
        f"CHROMIUM={os.environ['CHROMIUM']} is not an executable file"
        if os.environ.get("CHROMIUM")
        else "no `chromium` on PATH nor /usr/bin/chromium"
    )
    raise SystemExit(
        f"ui-check: Chromium not found ({where}). Install Debian's package: sudo {CHROMIUM_APT}"
    )


# The stack: its own devstack.py, or the running `make run`.


@dataclass
class Target:
    """Where the stack answers: the environment its clients (the CLI, ours) need, and the UI."""

    env: dict[str, str]
    cwd: Path  # the CLI runs here (its registry is .data/csp.db of this folder)
    ui_url: str
    own: bool  # a stack of our own (its SMTP sink refuses what we asked), not `make run`'s


def own_stack_environment(folder: Path, refuse: str = "") -> dict[str, str]:
    """Each port from the environment when set, a free one otherwise; data under `folder`;
    the SMTP sink answers 550 to the recipients matching `refuse` (comma-separated globs)."""

    def port(name: str) -> str:
        return os.environ.get(name) or str(free_port())

    metrics = os.environ.get("METRICS_ADDRESS") or f"127.0.0.1:{free_port()}"
    return {
        "TEMPORAL_ADDRESS": os.environ.get("TEMPORAL_ADDRESS") or f"127.0.0.1:{free_port()}",
        "TEMPORAL_NAMESPACE": "default",
        "TEMPORAL_UI_PORT": port("TEMPORAL_UI_PORT"),
        "PROVIDER": "sandbox",
        "PROVIDER_BASE_URL": os.environ.get("PROVIDER_BASE_URL")
        or f"http://127.0.0.1:{free_port()}",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": port("SMTP_PORT"),
        "SMTP_SINK_REFUSE": refuse,
        "CODEC_SERVER_PORT": port("CODEC_SERVER_PORT"),
        "METRICS_ADDRESS": metrics,
        # Plain JSON: the UI shows payloads without a codec server.
        "PAYLOAD_ENCRYPTION_KEYS": "",
        "DATABASE_URL": f"sqlite:///{folder / '.data' / 'csp.db'}",
        "SECRETS_KEY_FILE": str(folder / ".data" / "secrets.key"),
        "SANDBOX_PROVISIONING_DELAY": "1",
        "WORKERS": "1",
    }


@contextmanager
def own_stack(folder: Path, *, refuse: str = "", timeout: float = 120.0) -> Iterator[Target]:
    """devstack.py in `folder` (wiped first), until it prints its banner; stopped on leaving
    (SIGINT: it stops its services in order; any it left behind are killed by pid)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    env = own_stack_environment(folder, refuse)
    log_path = folder / "devstack.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "devstack.py")],
            cwd=folder,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    children: dict[int, bytes] = {}
    try:
        deadline = time.monotonic() + timeout
        while "local stack is up" not in log_path.read_text(errors="replace"):
            if process.poll() is not None:
                raise StackFailed(f"the stack exited at start:\n{_tail(log_path)}")
            if time.monotonic() > deadline:
                raise StackFailed(f"no stack after {timeout:.0f} s:\n{_tail(log_path)}")
            time.sleep(0.3)
        children = _children(process.pid)
        yield Target(env, folder, f"http://localhost:{env['TEMPORAL_UI_PORT']}", own=True)
    finally:
        children |= _children(process.pid)
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for pid, cmdline in children.items():  # still the process we saw: left behind
            try:
                if Path(f"/proc/{pid}/cmdline").read_bytes() == cmdline:
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                continue


def running_stack() -> Target:
    """The stack `make run` serves from this directory, found through the settings its
    clients read (environment, .env); the Web UI on TEMPORAL_UI_PORT (8233)."""
    ui_port = os.environ.get("TEMPORAL_UI_PORT", "8233")
    return Target({}, Path.cwd(), f"http://localhost:{ui_port}", own=False)


def _children(pid: int) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found[int(stat.parent.name)] = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
    return found


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:]
