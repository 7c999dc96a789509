"""``queue/`` is storage: the runner, which drives a Mailer, sits above it in
``smtpretry/runner.py``. The old names keep working: ``smtpretry.queue`` loads the
runner when asked for it, and ``smtpretry.queue.runner`` is a deprecated alias."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import smtpretry.queue
import smtpretry.runner

QUEUE = Path(__file__).resolve().parents[2] / "smtpretry" / "queue"
ABOVE_THE_QUEUE = {"mailer", "runner", "transport", "pool", "compat"}


def _imports_at_module_level(path: Path) -> set[str]:
    """The smtpretry modules ``path`` imports when it is imported (not in functions,
    not under ``if TYPE_CHECKING:``)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.level >= 2 and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level >= 2:
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 1 and node.module == "runner":
            found.add("runner")  # the deprecated alias, which loads ../runner.py
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("smtpretry."):
            found.add(node.module.split(".")[1])
    return found


def test_no_queue_module_imports_what_sits_above_it() -> None:
    checked = []
    for path in sorted(QUEUE.glob("*.py")):
        if path.name in ("cli.py", "runner.py"):
            continue  # a command (it drives everything), and the deprecated alias of ../runner.py
        assert _imports_at_module_level(path) & ABOVE_THE_QUEUE == set(), path.name
        checked.append(path.name)
    assert {"__init__.py", "base.py", "sqlite.py", "redis.py", "crypto.py"} <= set(checked)


def test_importing_the_queue_does_not_import_the_runner_until_it_is_asked_for() -> None:
    code = (
        "import sys, smtpretry.queue\n"
        "assert 'smtpretry.runner' not in sys.modules, 'imported at once'\n"
        "from smtpretry.queue import QueueRunner, QueueRunStats\n"
        "import smtpretry.runner as r\n"
        "assert (QueueRunner, QueueRunStats) == (r.QueueRunner, r.QueueRunStats)\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "ok\n", done.stderr


def test_the_old_module_is_a_deprecated_alias_and_unknown_names_still_fail() -> None:
    sys.modules.pop("smtpretry.queue.runner", None)
    with pytest.warns(DeprecationWarning, match="import QueueRunner from smtpretry.runner"):
        old = importlib.import_module("smtpretry.queue.runner")
    assert old.QueueRunner is smtpretry.runner.QueueRunner
    assert old.QueueRunStats is smtpretry.runner.QueueRunStats
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        smtpretry.queue.Nope  # noqa: B018
