"""App-only sign-in with MSAL client credentials (secret or certificate).

The token is requested from ``{authority_url}/{tenant_id}`` for the scope
``{graph host}/.default`` (the application permissions granted to the app). MSAL keeps it
in memory and answers from that cache until shortly before it expires. Secrets are
revealed only to build the MSAL client and never logged; MSAL's own error text (code and
description) is passed on, it carries no secret.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from syncd.connectors.graph.config import GraphConnection
from syncd.errors import ConnectionFailed

log = logging.getLogger(__name__)


def scope_of(conn: GraphConnection) -> str:
    """``https://graph.microsoft.com/.default`` for the configured Graph host."""
    parts = urlsplit(conn.graph_url)
    return f"{parts.scheme}://{parts.netloc}/.default"


def _credential(conn: GraphConnection) -> Any:
    if conn.client_secret is not None:
        return conn.client_secret.reveal()
    cert = conn.certificate
    assert cert is not None  # the config model guarantees one credential
    out: dict[str, Any] = {"private_key": cert.private_key.reveal()}
    if cert.passphrase is not None:
        out["passphrase"] = cert.passphrase.reveal()
    if cert.certificate_file is not None:
        try:
            out["public_certificate"] = Path(cert.certificate_file).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as err:
            raise ConnectionFailed(
                f"certificate_file {cert.certificate_file}: {type(err).__name__}"
            ) from None
    else:
        out["thumbprint"] = cert.thumbprint
    return out


class TokenSource:
    """Access tokens for Graph; thread-safe; ``refresh=True`` skips MSAL's cache."""

    def __init__(self, conn: GraphConnection):
        self.conn = conn
        self._app: Any = None
        self._lock = threading.Lock()

    def _http(self) -> requests.Session:
        """requests lets $REQUESTS_CA_BUNDLE override a session's ``verify``; passing
        ``verify`` with every request keeps ca_file in force."""
        session = requests.Session()
        session.request = functools.partial(  # type: ignore[method-assign]
            session.request,
            verify=str(self.conn.ca_file) if self.conn.ca_file else True,
            timeout=self.conn.timeout,
        )
        return session

    def _make_app(self) -> Any:
        import msal

        try:
            return msal.ConfidentialClientApplication(
                self.conn.client_id,
                client_credential=_credential(self.conn),
                authority=f"{self.conn.authority_url}/{self.conn.tenant_id}",
                validate_authority=False,
                instance_discovery=False,
                http_client=self._http(),
            )
        except requests.RequestException as err:
            raise ConnectionFailed(
                f"Graph sign-in at {self.conn.authority_url}: {_why(err)}"
            ) from None
        except ValueError as err:
            # msal: bad authority answer, unreadable key/certificate (text has no secret)
            raise ConnectionFailed(f"Graph sign-in: {str(err).splitlines()[0][:200]}") from None

    def token(self, *, refresh: bool = False) -> str:
        """A bearer token. Raises ConnectionFailed (refused credentials, unreachable
        sign-in host, TLS) with MSAL's error code, never the secret."""
        with self._lock:
            if self._app is None:
                self._app = self._make_app()
            scopes = [scope_of(self.conn)]
            try:
                if refresh:
                    self._app.remove_tokens_for_client()
                got = self._app.acquire_token_for_client(scopes=scopes)
            except requests.RequestException as err:
                raise ConnectionFailed(
                    f"Graph sign-in at {self.conn.authority_url}: {_why(err)}"
                ) from None
        if "access_token" not in got:
            desc = (got.get("error_description") or "").splitlines()
            raise ConnectionFailed(
                f"Graph sign-in refused for app {self.conn.client_id}: "
                f"{got.get('error', 'error')}{': ' + desc[0][:200] if desc else ''}"
            )
        return got["access_token"]

    def close(self) -> None:
        if self._app is not None:
            self._app.http_client.close()


def token_roles(token: str) -> list[str] | None:
    """The ``roles`` claim (application permissions) of a JWT access token, read without
    verifying it (only Graph verifies it); None when the token is not a readable JWT."""
    try:
        body = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (IndexError, ValueError):
        return None
    roles = claims.get("roles")
    return [str(r) for r in roles] if isinstance(roles, list) else []


def _why(err: Exception) -> str:
    text = str(err)
    if "CERTIFICATE_VERIFY_FAILED" in text or "SSLError" in type(err).__name__:
        return "TLS certificate not trusted (set ca_file)"
    if isinstance(err, requests.ConnectionError):
        return "cannot connect"
    if isinstance(err, requests.Timeout):
        return "timed out"
    return type(err).__name__
