"""A private Postfix instance on a loopback port, for the tests in ``tests/mta``.

What this module owns: ``PostfixInstance`` writes a ``main.cf``/``master.cf`` into a scratch
directory (config, queue, data and mailboxes all under it), runs ``master -c DIR -d`` in the
foreground as a child process, and counts deliveries per recipient from the Maildirs.

How the instance answers:

- it listens on ``127.0.0.1:<port>`` only (master.cf), for the domain ``mta.test``, delivered by
  Postfix's ``virtual`` agent to ``<root>/mail/<local part>/`` (a Maildir per recipient);
- ``smtpd_client_connection_count_limit`` (default 2) with ``smtpd_client_event_limit_exceptions``
  empty, so 127.0.0.1 is NOT exempt (Postfix exempts ``$mynetworks`` by default): one connection
  over the limit gets ``421 4.7.0 mta.test Error: too many connections from 127.0.0.1``;
- ``check_recipient_access`` answers ``452 4.2.2 Mailbox full`` for ``full@mta.test`` and
  ``422 4.2.2 ... over quota`` for ``quota@mta.test``;
- ``message_size_limit`` is small and SIZE is not advertised (``smtpd_discard_ehlo_keywords``),
  so a big message is uploaded and Postfix's cleanup answers ``552 5.3.4 Message size exceeds
  fixed limit`` after the final dot.

Postfix needs root: master starts as root and its daemons drop to ``mail_owner``; the Maildirs
belong to ``nobody``. The system-wide Postfix (``/etc/postfix``) is neither used nor started.
"""

from __future__ import annotations

import collections
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["DOMAIN", "MAILBOXES", "PostfixInstance", "postfix_problem"]

DOMAIN = "mta.test"
MASTER = Path("/usr/lib/postfix/sbin/master")
POSTFIX = shutil.which("postfix", path="/usr/sbin:/usr/bin:/sbin:/bin")

# Services the instance needs: smtpd on our port, and the internal daemons behind it. No chroot
# (the queue lives in a scratch directory), no outbound smtp, no pickup (nobody uses sendmail).
_MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
virtual   unix  - n n - - virtual
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""

_MAIN_CF = """\
compatibility_level = 3.6
config_directory = {conf}
queue_directory = {root}/queue
data_directory = {root}/data
daemon_directory = /usr/lib/postfix/sbin
command_directory = /usr/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
maillog_file = {root}/maillog
maillog_file_prefixes = {root}

myhostname = {domain}
mydomain = {domain}
myorigin = {domain}
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
alias_maps =
alias_database =
local_recipient_maps =
relay_domains =
biff = no
# Mail to other domains (bounces to the test senders) is thrown away: nothing leaves the host.
default_transport = discard
relay_transport = discard

virtual_mailbox_domains = {domain}
virtual_mailbox_base = {root}/mail
virtual_mailbox_maps = texthash:{conf}/vmailbox
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}

# The limits under test. 127.0.0.1 is in $mynetworks, which Postfix exempts from connection
# limits by default: the empty exception list makes the limit apply to loopback.
smtpd_client_connection_count_limit = {connection_limit}
smtpd_client_event_limit_exceptions =
anvil_rate_time_unit = 10s
message_size_limit = {size_limit}
smtpd_discard_ehlo_keywords = size
smtpd_recipient_restrictions = check_recipient_access texthash:{conf}/recipient_access,
    permit_mynetworks, reject_unauth_destination
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
# Replies are not slowed down after errors: the tests send many refused recipients.
smtpd_error_sleep_time = 0
smtpd_soft_error_limit = 1000
smtpd_hard_error_limit = 1000
# Deliver at once, and never wait long on a busy queue.
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
"""

_RECIPIENT_ACCESS = f"""\
full@{DOMAIN}    452 4.2.2 Mailbox full
quota@{DOMAIN}   422 4.2.2 The recipient's mailbox is over its storage limit
"""

MAILBOXES = (
    *(f"u{i}-{k}" for i in range(200) for k in range(3)), "ok", "full", "quota", "big",
)
"""The local parts that have a mailbox; any other recipient gets ``550 5.1.1`` at RCPT."""


def postfix_problem() -> str | None:
    """Why a private Postfix cannot run here, or None."""
    if POSTFIX is None or not MASTER.exists():
        return "Postfix is not installed (Debian package 'postfix'; `make debian-packages`)"
    if os.geteuid() != 0:
        return "a private Postfix instance needs root (master starts as root, daemons drop privileges)"
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return "the 'postfix' user is missing: the Debian package did not install cleanly"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PostfixInstance:
    """One private Postfix: ``start()``, ``copies()``, ``wait_idle()``, ``stop()``."""

    def __init__(self, *, connection_limit: int = 2, size_limit: int = 100_000) -> None:
        # Not pytest's tmp_path: it is 0700 under root, and Postfix's unprivileged daemons
        # and the virtual agent (as nobody) must reach the queue and the Maildirs.
        self.root = Path(tempfile.mkdtemp(prefix="smtpretry-postfix-"))
        self.root.chmod(0o755)
        self.conf = self.root / "conf"
        self.mail = self.root / "mail"
        self.port = _free_port()
        self.connection_limit = connection_limit
        self.size_limit = size_limit
        self.process: subprocess.Popen[bytes] | None = None
        nobody = pwd.getpwnam("nobody")
        self.uid, self.gid = nobody.pw_uid, nobody.pw_gid

    # -- configuration and life cycle -----------------------------------------------------

    def write_config(self) -> None:
        self.conf.mkdir()
        (self.root / "queue").mkdir(mode=0o755)  # root's; `postfix check` fills it in
        self.mail.mkdir()
        os.chown(self.mail, self.uid, self.gid)
        values = {
            "conf": self.conf, "root": self.root, "domain": DOMAIN, "uid": self.uid, "gid": self.gid,
            "connection_limit": self.connection_limit, "size_limit": self.size_limit,
        }
        (self.conf / "main.cf").write_text(_MAIN_CF.format(**values))
        (self.conf / "master.cf").write_text(_MASTER_CF.format(port=self.port))
        (self.conf / "recipient_access").write_text(_RECIPIENT_ACCESS)
        # One Maildir per local part (a trailing slash means Maildir to the virtual agent).
        (self.conf / "vmailbox").write_text("".join(f"{m}@{DOMAIN} {m}/\n" for m in MAILBOXES))

    def start(self, timeout_s: float = 20.0) -> None:
        self.write_config()
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "MAIL_CONFIG": str(self.conf)}
        assert POSTFIX is not None
        # `postfix check` creates the queue and data directories with Postfix's ownerships.
        subprocess.run([POSTFIX, "-c", str(self.conf), "check"], env=env, check=True,
                       capture_output=True, timeout=timeout_s)
        # master in the foreground (-d): it is our child, and SIGTERM stops it and its daemons.
        self.process = subprocess.Popen(
            [str(MASTER), "-c", str(self.conf), "-d"], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"postfix master exited at start-up: {self.diagnostics()}")
            if self._greets():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"postfix did not greet on port {self.port}: {self.diagnostics()}")
            time.sleep(0.05)

    def _greets(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                ok = s.recv(512).startswith(b"220")
                s.sendall(b"QUIT\r\n")
                with contextlib.suppress(OSError):
                    s.recv(512)
                return ok
        except OSError:
            return False

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # master stops its own daemons
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc is not None and proc.stderr is not None:
            proc.stderr.close()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- what the server did --------------------------------------------------------------

    def copies(self) -> collections.Counter[str]:
        """Messages delivered per recipient (``local@mta.test``), counted in the Maildirs."""
        counts: collections.Counter[str] = collections.Counter()
        if self.mail.exists():
            for box in self.mail.iterdir():
                n = sum(1 for _ in (box / "new").iterdir()) if (box / "new").exists() else 0
                if n:
                    counts[f"{box.name}@{DOMAIN}"] = n
        return counts

    def queued(self) -> list[Path]:
        """Messages still in Postfix's queue (not yet delivered, or deferred)."""
        queue = self.root / "queue"
        return [
            p for d in ("maildrop", "incoming", "active", "deferred", "hold")
            for p in _files(queue / d)
        ]

    def wait_idle(self, timeout_s: float = 30.0) -> None:
        """Wait until the queue is empty: every accepted message is in its Maildir."""
        deadline = time.monotonic() + timeout_s
        while self.queued():
            if time.monotonic() > deadline:
                raise AssertionError(f"Postfix queue not empty after {timeout_s}s: {self.diagnostics()}")
            time.sleep(0.05)

    def log_lines(self) -> list[str]:
        path = self.root / "maillog"
        return path.read_text(errors="replace").splitlines() if path.exists() else []

    def diagnostics(self) -> str:
        err = b""
        if self.process is not None and self.process.poll() is not None and self.process.stderr:
            err = self.process.stderr.read()
        tail = "\n".join(self.log_lines()[-30:])
        return f"{err.decode(errors='replace')}\n--- maillog tail ---\n{tail}"


def _files(directory: Path) -> Iterator[Path]:
    if directory.exists():
        for dirpath, _, names in os.walk(directory):
            for name in names:
                yield Path(dirpath) / name
