"""What a library user pays for: the engine, the log and the queue, never the command line.

The command line's packages (click, rich, and aiosmtpd for the demo server) are the ``cli``
extra. These tests run interpreters in which importing them fails, as on a machine without
the extra: the library sends mail there (to a server in this process), every module outside
``smtpretry.cli`` imports, and the ``smtpretry`` command says in one line what is missing.
"""

from __future__ import annotations

import asyncio
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import smtpretry
from smtpretry.__main__ import MISSING
from tests.servers import ScriptedHandler, serve

REPO = Path(__file__).resolve().parents[1]
CLI_PACKAGES = ("click", "rich", "aiosmtpd")

# Installed first in each interpreter below: importing a CLI package fails as if it were absent.
WITHOUT_CLI = f"""
import importlib.abc, sys

class _WithoutCLI(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in {CLI_PACKAGES!r}:
            raise ImportError(f"No module named {{fullname!r}} (the cli extra is not installed)",
                              name=fullname)
        return None

sys.meta_path.insert(0, _WithoutCLI())
"""

ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def without_cli(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", WITHOUT_CLI + textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=60, cwd=REPO, env=ENV)


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=\[ ;]", r, maxsplit=1)[0] for r in requirements}


def test_the_core_needs_no_command_line_package_and_the_cli_extra_has_them() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert _names(project["dependencies"]) == {"aiosmtplib", "tenacity", "structlog", "cryptography"}
    extras = project["optional-dependencies"]
    assert _names(extras["cli"]) == set(CLI_PACKAGES)
    assert "smtpretry[cli,django,redis,mx]" in extras["test"]
    assert _names(extras["mx"]) == {"dnspython"}  # MX routes; the Router needs it only for them
    assert project["scripts"] == {"smtpretry": "smtpretry.__main__:main"}


async def test_a_library_user_sends_mail_without_the_cli_extra() -> None:
    handler = ScriptedHandler()
    async with serve(handler) as port:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", WITHOUT_CLI + textwrap.dedent(f"""
                import asyncio, sys
                import smtpretry
                from smtpretry import Mailer, RetryPolicy

                async def main():
                    async with Mailer("127.0.0.1", {port}, tls="none",
                                      policy=RetryPolicy(backoff_base=0.001)) as m:
                        r = await m.send(b"Subject: hi\\r\\n\\r\\nhello\\r\\n", sender="app@example.org",
                                         recipients=["alice@example.com"])
                    print(r.delivered)

                asyncio.run(main())
                import smtpretry.logs, smtpretry.queue
                smtpretry.configure_logging(level="none")
                print(sorted(n for n in sys.modules if n.partition(".")[0] in {CLI_PACKAGES!r}))
            """),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO, env=ENV,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert out.decode().splitlines() == ["['alice@example.com']", "[]"]
    assert handler.copies == {"alice@example.com": 1}  # at the server: the one copy


def test_every_module_outside_the_command_line_imports_without_the_cli_extra() -> None:
    library = [
        info.name for info in pkgutil.walk_packages(smtpretry.__path__, "smtpretry.")
        if not info.name.startswith("smtpretry.cli")
    ]
    assert "smtpretry.mailer" in library and "smtpretry.logs.report" in library
    done = without_cli("import importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in library))
    assert done.returncode == 0, done.stderr


def test_the_command_without_the_cli_extra_says_so_in_one_line() -> None:
    script = shutil.which("smtpretry", path=str(Path(sys.executable).parent))
    assert script is not None, "the console script is not installed: pip install -e '.[test]'"
    runs = {
        "console script": without_cli(f"""
            import runpy, sys
            sys.argv = ["smtpretry", "send", "--help"]
            runpy.run_path({script!r}, run_name="__main__")
        """),
        "python -m smtpretry": without_cli("""
            import runpy, sys
            sys.argv = ["smtpretry", "demo"]
            runpy.run_module("smtpretry", run_name="__main__", alter_sys=True)
        """),
    }
    for how, done in runs.items():
        assert (done.returncode, done.stdout, done.stderr) == (2, "", MISSING + "\n"), how
    assert MISSING == "smtpretry: error: the command line needs the cli extra: pip install 'smtpretry[cli]'"


def test_an_import_error_that_is_not_the_extra_is_not_hidden() -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent("""
            import sys
            sys.modules["smtpretry.cli"] = None  # a broken install, not a missing extra
            from smtpretry.__main__ import main
            main()
        """)], capture_output=True, text=True, timeout=60, cwd=REPO, env=ENV,
    )
    assert done.returncode == 1 and "Traceback" in done.stderr and MISSING not in done.stderr
