"""Unit tests for snapshot secret redaction (no processes, no root)."""

from __future__ import annotations

import pytest

from hostprof.snapshot.redact import REDACTED
from hostprof.snapshot.redact import Redactor
from hostprof.snapshot.redact import is_secret_name


@pytest.mark.parametrize(
    "name",
    [
        "API_TOKEN",
        "GITHUB_TOKEN",
        "aws_secret_access_key",
        "DB_PASSWORD",
        "MYSQL_PWD",
        "PGPASS",
        "SSH_AUTH_SOCK",
        "Authorization",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "STRIPE_KEY",
        "--password",
        "--api-key",
        "--token",
        "session_cookie",
    ],
)
def test_secret_names_are_recognised(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["PATH", "HOME", "PWD", "OLDPWD", "LANG", "--verbose", "--port"])
def test_ordinary_names_are_not_secret(name: str) -> None:
    assert not is_secret_name(name)


def test_env_secrets_and_url_credentials_are_redacted() -> None:
    # GIVEN an environment with named secrets and a URL with credentials under a harmless name
    env = {
        "PATH": "/usr/bin",
        "API_TOKEN": "tok-1234567890",
        "DB_PASSWORD": "hunter2hunter2",
        "DATABASE_URL": "postgres://app:pw-in-url-999@db.internal:5432/app",
        "PWD": "/srv/app",
    }
    r = Redactor()
    # WHEN it is redacted
    out = r.redact_env(env)
    # THEN the secrets are gone, the rest is kept
    assert out["PATH"] == "/usr/bin"
    assert out["PWD"] == "/srv/app"
    assert out["API_TOKEN"] == REDACTED
    assert out["DB_PASSWORD"] == REDACTED
    assert out["DATABASE_URL"] == f"postgres://{REDACTED}@db.internal:5432/app"
    assert "pw-in-url-999" not in repr(out)
    assert r.count == 3


def test_cmdline_flag_forms_are_redacted() -> None:
    argv = [
        "python",
        "app.py",
        "--password=s3cret-eq",
        "--token",
        "tok-next-arg",
        "--api-key",
        "--verbose",  # a flag after a secret flag is not swallowed as its value
        "API_SECRET=assign-form",
        "--db",
        "mysql://root:rootpw-123@localhost/db",
        "--port",
        "8080",
    ]
    r = Redactor()
    out = r.redact_cmdline(argv)
    assert out == [
        "python",
        "app.py",
        f"--password={REDACTED}",
        "--token",
        REDACTED,
        "--api-key",
        "--verbose",
        f"API_SECRET={REDACTED}",
        "--db",
        f"mysql://{REDACTED}@localhost/db",
        "--port",
        "8080",
    ]


def test_scrub_removes_remembered_values_everywhere() -> None:
    # GIVEN secrets seen in an environment and a command line
    r = Redactor()
    r.redact_env({"API_TOKEN": "tok-abcdefgh"})
    r.redact_cmdline(["--password", "pw-zyxwvut"])
    # WHEN free text (a local variable's repr, a thread name) contains them
    text = "headers={'Authorization': 'Bearer tok-abcdefgh'} pw='pw-zyxwvut' ok"
    # THEN they are scrubbed, the rest survives
    assert r.scrub(text) == f"headers={{'Authorization': 'Bearer {REDACTED}'}} pw='{REDACTED}' ok"
    tree = {"locals": {"t": "tok-abcdefgh"}, "list": ["x", "pw-zyxwvut"], "n": 3}
    assert r.scrub_tree(tree) == {"locals": {"t": REDACTED}, "list": ["x", REDACTED], "n": 3}


def test_short_values_are_not_scrubbed_by_value() -> None:
    # A one-letter password is redacted where it is named, but not hunted for in free text:
    # replacing every "x" would wreck the archive.
    r = Redactor()
    assert r.redact_cmdline(["--password=x"]) == [f"--password={REDACTED}"]
    assert r.scrub("max(x, y)") == "max(x, y)"


def test_url_without_password_still_loses_its_userinfo() -> None:
    r = Redactor()
    assert r.scrub("git clone https://ghp_tokenvalue123@github.com/o/r") == (
        f"git clone https://{REDACTED}@github.com/o/r"
    )
    # e-mail addresses are not URLs
    assert r.scrub("mail ops@example.com") == "mail ops@example.com"


def test_secret_named_locals_are_redacted_and_remembered() -> None:
    r = Redactor()
    out = r.redact_locals(
        {
            "api_token": "'tok-abcdef-123456'",
            "db_password": "'pw-short…'",
            "key": "'name'",  # a dict key: redacted here, but too short to scrub elsewhere
            "secret_count": "12345678",  # not a string: redacted, never scrubbed by value
            "password": "None",  # unset: kept, it reveals nothing
            "count": "4242",
            "config": "<dict of 3>",
        }
    )
    assert out == {
        "api_token": REDACTED,
        "db_password": REDACTED,
        "key": REDACTED,
        "secret_count": REDACTED,
        "password": "None",
        "count": "4242",
        "config": "<dict of 3>",
    }
    assert r.count == 4
    assert r.scrub("sent tok-abcdef-123456 as name 12345678") == (
        f"sent {REDACTED} as name 12345678"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("'https://u:pw-123@host/x'", f"'https://{REDACTED}@host/x'"),
        # cut by the core's summary cap before the '@': the rest of the password goes too
        ("'postgres://app:very-long-passw...'", f"'postgres://{REDACTED}...'"),
        ("'postgres://app:very-long-passw…", f"'postgres://{REDACTED}…"),
        # no credentials: kept as is
        ("'https://example.com/path...'", "'https://example.com/path...'"),
        ("'just text...'", "'just text...'"),
    ],
)
def test_url_credentials_in_locals_are_redacted_even_when_cut(value: str, expected: str) -> None:
    assert Redactor().redact_locals({"dsn": value}) == {"dsn": expected}
