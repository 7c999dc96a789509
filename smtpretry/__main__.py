"""The ``smtpretry`` command (the console script) and ``python -m smtpretry``.

The command line needs the ``cli`` extra: click and rich, and aiosmtpd for the demo's
server. The library does not, so this module imports the command line only inside a try:
without the extra, the command says so in one line (exit status 2), not a traceback.
"""

import sys

CLI_EXTRA = ("click", "rich", "aiosmtpd")
MISSING = "smtpretry: error: the command line needs the cli extra: pip install 'smtpretry[cli]'"


def main() -> None:
    """Run the ``smtpretry`` command."""
    try:
        from .cli import main as run
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] not in CLI_EXTRA:
            raise  # not a missing extra: a real error, shown as one
        print(MISSING, file=sys.stderr)
        sys.exit(2)
    run()


if __name__ == "__main__":
    main()
