"""What the benchmarks share: the local sink, the test message, the machine's
description and Markdown tables.

The sink is Postfix's ``smtp-sink`` when it is installed (a C event loop: it
never is the bottleneck, and it runs in its own process, so its CPU is not the
client's), else an aiosmtpd sink in a subprocess (``_servers.py sink``). Either
way it counts the messages it accepted, so a run can check that every message
arrived. Only 127.0.0.1 is used.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
SENDER = "bench@example.org"
SMTP_SINK_PATHS = ("/usr/sbin/smtp-sink", "/usr/lib/postfix/sbin/smtp-sink", "/usr/libexec/postfix/smtp-sink")


# -- tables ----------------------------------------------------------------------------------------


@dataclass
class Table:
    """One result table: a title, column names, rows of cells (text) and notes under it."""

    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([_cell(c) for c in cells])

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", "| " + " | ".join(self.headers) + " |",
                 "|" + "|".join("---" if i == 0 else "---:" for i in range(len(self.headers))) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        if self.notes:
            lines += ["", *self.notes]
        return "\n".join(lines) + "\n"


def _cell(value: object) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "n/a"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value).replace("|", "\\|")


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


# -- the machine -----------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    """nproc, CPU model, Python and library versions: printed with every table."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        nproc = os.cpu_count() or 0
    versions = {}
    for name in ("smtpretry", "aiosmtplib", "tenacity", "structlog", "aiosmtpd"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions[name] = version(name)
    return {
        "nproc": str(nproc),
        "cpu": model,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": f"{platform.system()} {platform.release()}",
        "libraries": ", ".join(f"{k} {v}" for k, v in versions.items()),
    }


def machine_line() -> str:
    m = machine()
    return (f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['python']}, {m['os']}; {m['libraries']}.")


# -- messages --------------------------------------------------------------------------------------


def message_bytes(size: int = 1024) -> bytes:
    """One ordinary text message of about ``size`` bytes, as every client sends it."""
    msg = EmailMessage()
    msg["From"] = SENDER
    msg["To"] = "someone@example.com"
    msg["Subject"] = "Your receipt"
    msg["Message-ID"] = "<bench@example.org>"
    line = "The quick brown fox jumps over the lazy dog, again and again.\n"
    msg.set_content(line * max(1, size // len(line)))
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def recipient(i: int) -> str:
    return f"user{i}@example.com"


# -- subprocess servers ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((HOST, port), timeout=0.5) as s:
                s.recv(512)  # the greeting; a closed socket now is a clean QUIT-less close
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on {HOST}:{port} after {timeout_s} s") from None
            time.sleep(0.05)


def smtp_sink_path() -> str | None:
    found = shutil.which("smtp-sink")
    if found:
        return found
    return next((p for p in SMTP_SINK_PATHS if os.access(p, os.X_OK)), None)


class Sink:
    """``with Sink() as sink``: a fast SMTP sink on 127.0.0.1:``sink.port`` in its
    own process. ``kind`` is ``"smtp-sink"`` or ``"aiosmtpd"``; ``stop()``
    returns the number of messages the sink accepted (None if it cannot tell)."""

    def __init__(self, kind: str = "auto") -> None:
        path = smtp_sink_path()
        if kind == "auto":
            kind = "smtp-sink" if path else "aiosmtpd"
        if kind == "smtp-sink" and path is None:
            raise RuntimeError("smtp-sink not found (Debian: apt-get install postfix)")
        self.kind = kind
        self.port = 0
        self._proc: subprocess.Popen[str] | None = None
        self._out: IO[str] | None = None
        self._path = path
        self.messages: int | None = None

    def __enter__(self) -> Sink:
        if self.kind == "smtp-sink":
            assert self._path is not None
            self.port = free_port()
            self._out = tempfile.TemporaryFile("w+")
            # -c: count sessions and messages on stdout (we read the count at the end);
            # 1000: the listen backlog. As root it must drop privileges (-u).
            cmd = [self._path, "-c", *(["-u", "nobody"] if os.geteuid() == 0 else []),
                   f"{HOST}:{self.port}", "1000"]
            self._proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.DEVNULL, text=True)
            wait_for_port(self.port)
        else:
            self._proc, self.port = start_server_process("sink")
        return self

    def stop(self) -> int | None:
        proc, self._proc = self._proc, None
        if proc is None:
            return self.messages
        if self.kind == "smtp-sink":
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
            assert self._out is not None
            self._out.seek(0)
            counts = re.findall(r"mesg=(\d+)", self._out.read())
            self._out.close()
            self.messages = int(counts[-1]) if counts else None
        else:
            stats = stop_server_process(proc)
            self.messages = int(stats["delivered"])
        return self.messages

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server_process(mode: str, *args: str) -> tuple[subprocess.Popen[str], int]:
    """Start ``python -m benchmarks._servers MODE ARGS`` and read the port it listens on."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks._servers", mode, *args], cwd=ROOT,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"benchmarks._servers {mode} did not start: {line!r}")
    return proc, int(line.split()[1])


def stop_server_process(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """Close its stdin (the signal to stop) and read the statistics it prints."""
    out, _ = proc.communicate(timeout=30)
    last = [line for line in out.splitlines() if line.startswith("{")]
    if not last:
        raise RuntimeError(f"server printed no statistics: {out!r}")
    return dict(json.loads(last[-1]))


def python_path_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send what an older benchmark prints for humans to stderr, so stdout stays Markdown."""
    with contextlib.redirect_stdout(sys.stderr):
        yield
