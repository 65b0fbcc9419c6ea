from __future__ import annotations

import pytest

from polyjobs.redact import redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://user:hunter2@host:6379/0", "redis://user:***@host:6379/0"),
        ("rediss://:hunter2@host/1", "rediss://:***@host/1"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("sqlite:////tmp/x/polyjobs.db", "sqlite:////tmp/x/polyjobs.db"),
        (
            "unix:///run/redis.sock?password=hunter2&db=1",
            "unix:///run/redis.sock?password=***&db=1",
        ),
        (
            "https://discord.com/api/webhooks/123456/AbC-tok_en.x?wait=true",
            "https://discord.com/api/webhooks/123456/***?wait=true",
        ),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_text_finds_secrets_inside_sentences() -> None:
    text = "cannot reach redis://admin:s3cr3t@db:6379/0 (and mongodb://u:p4ss@m:27017)"
    out = redact_text(text)
    assert "s3cr3t" not in out and "p4ss" not in out
    assert "redis://admin:***@db:6379/0" in out
