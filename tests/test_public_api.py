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
