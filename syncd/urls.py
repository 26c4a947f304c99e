"""URLs in messages: never with a password in them.

A URL in a config file may carry a secret by mistake (``ldap://admin:PW@host``,
``postgresql://u@db/x?password=PW``). The validators refuse such URLs; the refusal, and
every other message naming a URL, shows :func:`redact_url`'s form of it, never the text
as written.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, urlsplit

SECRET_QUERY_KEYS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "pass",
        "sslpassword",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "api_key",
        "apikey",
    }
)
"""Query parameters whose value is a secret (libpq, SQLAlchemy drivers, HTTP APIs)."""


def secret_query_keys(url: str) -> list[str]:
    """The query parameters of ``url`` that carry a secret (sorted, lower case)."""
    try:
        query = urlsplit(url).query
    except ValueError:
        return []
    return sorted(
        {k.lower() for k, _ in parse_qsl(query, keep_blank_values=True)} & SECRET_QUERY_KEYS
    )


def url_secret_problem(url: str) -> str | None:
    """Why ``url`` may not be used as written (a password in it), or None.

    The answer never contains the secret."""
    try:
        parts = urlsplit(url)
        has_password = parts.password is not None
    except ValueError:
        return None
    if has_password:
        return "the URL must not contain a password (user:PASSWORD@)"
    keys = secret_query_keys(url)
    if keys:
        return f"the URL must not contain a password (query parameter {', '.join(keys)})"
    return None


def redact_url(url: str) -> str:
    """``url`` with its password and secret query values replaced by ``***``, for
    messages. A URL too broken to take apart is shown as ``<unparsable URL>``."""
    try:
        parts = urlsplit(url)
        user, password, host = parts.username, parts.password, parts.hostname
        try:
            port = str(parts.port) if parts.port is not None else ""
        except ValueError:
            port = "<bad port>"
    except ValueError:
        return "<unparsable URL>"
    netloc = ""
    if user is not None:
        netloc = quote(user, safe="") + (":***" if password is not None else "") + "@"
    if host:
        netloc += f"[{host}]" if ":" in host else host
    if port:
        netloc += f":{port}"
    shown = f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else netloc + parts.path
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        shown += "?" + "&".join(
            f"{k}={'***' if k.lower() in SECRET_QUERY_KEYS else v}" for k, v in pairs
        )
    return shown
