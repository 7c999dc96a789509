"""The public surface: __all__ is importable and complete, smtplib's names are there."""

from __future__ import annotations

import smtplib

import smtpretry


def test_every_name_in_all_is_importable() -> None:
    for name in smtpretry.__all__:
        assert getattr(smtpretry, name) is not None, name


def test_all_lists_every_public_name_once() -> None:
    assert len(smtpretry.__all__) == len(set(smtpretry.__all__))
    public = {n for n in vars(smtpretry) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(smtpretry, n)).__name__ == "module"}
    assert public - modules - set(smtpretry.__all__) == set()


def test_smtplib_names_are_smtplibs_own() -> None:
    for name in smtplib.__all__:
        if name not in ("SMTP", "SMTP_SSL"):
            assert getattr(smtpretry, name) is getattr(smtplib, name), name
    assert issubclass(smtpretry.SMTP_SSL, smtpretry.SMTP)


# Every name the modules exported before the layering of 0.4 (their __all__ then). A name
# that moved keeps working from where it was, through a deprecated alias where needed.
EXPORTED_BEFORE_0_4 = {
    "smtpretry.events": [
        "BACKEND_LOST", "CAP_LOWERED", "CAP_RAISED", "CONNECTION_LOST", "EVENTS", "EXPIRED",
        "MESSAGE_DELIVERED", "QUEUED", "RATE_LOWERED", "RATE_RAISED", "RECIPIENT_DEFERRED",
        "RECIPIENT_FAILED", "RETRY_SCHEDULED", "SCHEMA_VERSION", "SEND_COMPLETED", "LEASE_LOST",
        "HashRecipients", "Logger", "configure_logging", "get_logger", "hash_address",
    ],
    "smtpretry.transport": ["Endpoint", "Session", "TLSMode", "Transaction", "is_loopback", "open_session"],
    "smtpretry.pool": ["AdaptiveCap", "CapReport", "DestinationPool", "Limiter", "LocalSlots",
                       "SessionSource", "Slots"],
    "smtpretry.redis_limiter": ["BackendError", "RedisSlots", "connect", "redacted", "redis_limiter"],
    "smtpretry.decide": ["Attempt", "Decision", "Defer", "Fail", "Ok", "RecipientState", "Retry",
                         "classify_evidence", "decide", "give_up"],
    "smtpretry.result": ["Outcome", "SendResult", "Status"],
    "smtpretry.queue": ["Destination", "PendingRecipient", "Queue", "QueueEntry", "QueueRunStats",
                        "QueueRunner", "QueueStats", "default_queue_path", "open_queue"],
    "smtpretry.queue.runner": ["QueueRunStats", "QueueRunner"],
    "smtpretry.logs": ["LogInputError", "ReadStats", "Record", "Summary", "read_records", "select",
                       "summarize"],
    "smtpretry.config": ["Config", "Profile", "Settings", "active_config", "configure", "load_config",
                         "parse_duration"],
    "smtpretry.mailer": ["Mailer"],
    "smtpretry.compat": ["SMTP", "SMTPHandler", "SMTP_SSL", "refused_error"],
}


def test_names_exported_before_the_layering_still_import() -> None:
    import importlib
    import warnings

    missing = []
    for module, names in EXPORTED_BEFORE_0_4.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the aliases say they are deprecated
            mod = importlib.import_module(module)
        missing += [f"{module}.{n}" for n in names if not hasattr(mod, n)]
    assert missing == []


def test_the_moved_modules_say_where_their_names_went() -> None:
    import importlib
    import sys

    import pytest

    for module in ("smtpretry.pool", "smtpretry.redis_limiter", "smtpretry.queue.runner"):
        sys.modules.pop(module, None)
        with pytest.warns(DeprecationWarning, match="deprecated"):
            importlib.import_module(module)
