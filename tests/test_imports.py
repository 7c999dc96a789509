"""What importing costs: each check runs in a fresh interpreter, as a user's program would.

``import smtpretry`` loads the pure core only; the engine (aiosmtplib, tenacity, the
Mailer) and structlog come with the names that need them. Reading logs and the schema needs
neither, and every module imports on its own (no import cycle at run time).
"""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import smtpretry

REPO = Path(__file__).resolve().parents[1]
ENGINE = ("aiosmtplib", "tenacity", "smtpretry.mailer")


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def loaded_after(statement: str, names: tuple[str, ...]) -> list[str]:
    done = run(f"import sys\n{statement}\nprint(' '.join(n for n in {names!r} if n in sys.modules))")
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_reading_logs_does_not_import_the_engine() -> None:
    assert loaded_after("import smtpretry.logs", ENGINE) == []
    assert loaded_after("from smtpretry.logs import read_records, summarize, select", ENGINE) == []


def test_the_schema_imports_nothing_and_the_package_only_the_pure_core() -> None:
    assert loaded_after("import smtpretry.events", (*ENGINE, "structlog")) == []
    assert loaded_after("import smtpretry", (*ENGINE, "structlog", "smtpretry.compat")) == []


def test_a_name_that_needs_the_engine_imports_it_when_first_used() -> None:
    assert loaded_after("import smtpretry; smtpretry.Mailer", ENGINE) == list(ENGINE)
    assert loaded_after("from smtpretry import SMTP", ("smtpretry.compat",)) == ["smtpretry.compat"]
    assert loaded_after("import smtpretry; smtpretry.configure_logging", ("structlog",)) == ["structlog"]


def test_lazy_names_are_listed_and_unknown_names_are_not_there() -> None:
    done = run("""
        import smtpretry
        names = set(dir(smtpretry))
        assert set(smtpretry.__all__) <= names, set(smtpretry.__all__) - names
        assert smtpretry.SMTP_SSL.__module__ == "smtpretry.compat"
        assert smtpretry.SMTP_SSL is smtpretry.SMTP_SSL
        try:
            smtpretry.no_such_name
        except AttributeError as exc:
            assert "no_such_name" in str(exc)
        else:
            raise AssertionError("no AttributeError")
        import smtpretry as smtplib
        import smtplib as real
        assert smtplib.SMTPException is real.SMTPException and smtplib.SMTP_PORT == 25
        from smtpretry.events import HashRecipients, Logger, configure_logging, get_logger, hash_address
        from smtpretry import _logging
        assert configure_logging is _logging.configure_logging and Logger is _logging.Logger
    """)
    assert done.returncode == 0, done.stderr


def _modules() -> list[str]:
    found = ["smtpretry"]
    for info in pkgutil.walk_packages(smtpretry.__path__, "smtpretry."):
        found.append(info.name)
    return sorted(found)


def test_every_module_imports_on_its_own() -> None:
    modules = _modules()
    assert {"smtpretry.mailer", "smtpretry.logs.parse", "smtpretry.queue.runner"} <= set(modules)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    running = {
        name: subprocess.Popen([sys.executable, "-c", f"import {name}"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
        for name in modules
    }
    failed = {}
    for name, proc in running.items():
        _, err = proc.communicate(timeout=60)
        if proc.returncode != 0:
            failed[name] = err.strip().splitlines()[-1:]
    assert failed == {}


@pytest.mark.parametrize("name", ["classify", "decide"])
def test_a_function_named_like_its_module_stays_the_function(name: str) -> None:
    # The pure core is imported with the package, before any submodule import could bind the
    # module over the function of the same name.
    done = run(f"import smtpretry.{name}, smtpretry; assert callable(smtpretry.{name}), smtpretry.{name}")
    assert done.returncode == 0, done.stderr
