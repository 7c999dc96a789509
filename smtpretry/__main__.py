"""``python -m smtpretry``: the same as the ``smtpretry`` command."""

from .cli import main

if __name__ == "__main__":
    main()
