"""exchangelib plumbing: an Account from an ExchangeConnection, TLS settings, bounded
back-off on ErrorServerBusy, and error translation to syncd errors.

exchangelib is used with ``autodiscover=False``, a fixed server version and the
fail-fast retry policy: it sends no autodiscover, version-guessing or ResolveNames
request, and every throttling answer comes back here, where :func:`with_backoff` waits
what the server asked (``BackOffMilliseconds``) a bounded number of times.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from exchangelib import (
    BASIC,
    DELEGATE,
    IMPERSONATION,
    NTLM,
    OAUTH2,
    Account,
    Configuration,
    Credentials,
    Identity,
    OAuth2Credentials,
    Version,
)
from exchangelib import errors as ewserr
from exchangelib.protocol import BaseProtocol, FailFast
from exchangelib.version import EXCHANGE_2013, EXCHANGE_2013_SP1, EXCHANGE_2016, EXCHANGE_2019

from syncd.connectors.exchange.models import ExchangeConnection
from syncd.errors import ConnectionFailed, SecretError, TargetError

log = logging.getLogger(__name__)

T = TypeVar("T")

_BUILDS = {
    "2013": EXCHANGE_2013,
    "2013_SP1": EXCHANGE_2013_SP1,
    "2016": EXCHANGE_2016,
    "2019": EXCHANGE_2019,
}

# Per-endpoint TLS settings. exchangelib builds its HTTP adapters from one class
# attribute, so the adapter below looks its settings up by URL.
_TLS: dict[str, bool | str] = {}
_TLS_LOCK = threading.Lock()


class _SyncdAdapter(requests.adapters.HTTPAdapter):
    """HTTPAdapter honouring per-endpoint ``verify`` / ``ca_file`` of syncd configs."""

    @staticmethod
    def _verify_for(url: str, verify: Any) -> Any:
        for prefix, setting in _TLS.items():
            if url.startswith(prefix):
                return setting
        return verify

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        super().cert_verify(conn, url, self._verify_for(url, verify), cert)

    def get_connection_with_tls_context(
        self, request: Any, verify: Any, proxies: Any = None, cert: Any = None
    ) -> Any:
        verify = self._verify_for(request.url, verify)
        return super().get_connection_with_tls_context(request, verify, proxies=proxies, cert=cert)


_SECRET_HEADER = re.compile(
    r"""(['"]?(?:Authorization|Proxy-Authorization|Cookie|Set-Cookie)['"]?\s*[:=]\s*)"""
    r"""(?:'[^']*'|"[^"]*"|[^,}\r\n]*)""",
    re.IGNORECASE,
)


class _RedactHeaders(logging.Filter):
    """exchangelib logs every request's headers (DEBUG, and ERROR on a failed POST):
    ``Authorization: Basic`` is the password in base64, NTLM's a crackable response.
    This masks those header values in the records of its logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: let the handler report it
            return True
        masked = _SECRET_HEADER.sub(r"\1'[redacted]'", message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


class _DropNtlmTokens(logging.Filter):
    """pyspnego logs every NTLM token at DEBUG; the client's AUTHENTICATE message is an
    offline-crackable response to the password."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("NTLM step")


def _install_log_redaction() -> None:
    for name, cls in (("exchangelib.util", _RedactHeaders), ("spnego._ntlm", _DropNtlmTokens)):
        logger = logging.getLogger(name)
        if not any(isinstance(f, cls) for f in logger.filters):
            logger.addFilter(cls())


_install_log_redaction()


def _install_tls(conn: ExchangeConnection) -> None:
    setting: bool | str = True
    if not conn.verify:
        log.warning("TLS certificate verification is OFF for %s", conn.endpoint)
        setting = False
    elif conn.ca_file is not None:
        if not conn.ca_file.is_file():
            raise ConnectionFailed(f"Exchange ca_file {conn.ca_file} does not exist")
        setting = str(conn.ca_file)
    with _TLS_LOCK:
        _TLS[conn.endpoint] = setting
        if BaseProtocol.HTTP_ADAPTER_CLS is not _SyncdAdapter:
            BaseProtocol.HTTP_ADAPTER_CLS = _SyncdAdapter


def make_account(conn: ExchangeConnection) -> Account:
    """An exchangelib Account for ``conn`` (no request is sent yet).

    Raises SecretError when a secret does not resolve.
    """
    _install_tls(conn)
    version = Version(build=_BUILDS[conn.version])
    if conn.auth == "oauth":
        assert conn.oauth is not None
        creds: Any = OAuth2Credentials(
            client_id=conn.oauth.client_id,
            client_secret=conn.oauth.client_secret.reveal(),
            tenant_id=conn.oauth.tenant_id,
            identity=Identity(primary_smtp_address=conn.mailbox),
        )
        auth_type = OAUTH2
    else:
        assert conn.username and conn.password is not None
        creds = Credentials(conn.username, conn.password.reveal())
        auth_type = NTLM if conn.auth == "ntlm" else BASIC
    config = Configuration(
        service_endpoint=conn.endpoint,
        credentials=creds,
        auth_type=auth_type,
        version=version,
        retry_policy=FailFast(),
    )
    account = Account(
        primary_smtp_address=conn.mailbox,
        config=config,
        autodiscover=False,
        access_type=IMPERSONATION if conn.impersonation else DELEGATE,
        default_timezone=None,
    )
    # Per-protocol timeout (exchangelib reads protocol.TIMEOUT for every POST).
    account.protocol.TIMEOUT = conn.timeout
    return account


def with_backoff(
    conn: ExchangeConnection,
    what: str,
    fn: Callable[[], T],
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``fn`` (one EWS request, or a read-only series), answering ErrorServerBusy
    with the wait the server asked for, at most ``conn.max_retries`` times.

    Raises ConnectionFailed for refused credentials or an unreachable/untrusted server,
    TargetError when the server stays busy or answers garbage. The password never
    appears in a message.
    """
    attempt = 0
    while True:
        try:
            return fn()
        except ewserr.ErrorServerBusy as err:
            attempt += 1
            if attempt > conn.max_retries:
                raise TargetError(
                    f"Exchange {conn.endpoint} stayed busy (ErrorServerBusy) through "
                    f"{conn.max_retries} retries of {what}; try again later"
                ) from None
            wait = err.back_off if err.back_off else min(2.0**attempt, conn.max_backoff)
            if wait > conn.max_backoff:
                # Honour the server: never come back sooner than it asked. A long wait
                # ends this run; the next scheduled run continues where this one stopped.
                raise TargetError(
                    f"Exchange {conn.endpoint} asks to back off {wait:.0f}s (ErrorServerBusy) "
                    f"during {what}, more than max_backoff {conn.max_backoff:.0f}s; stopping "
                    "this run"
                ) from None
            log.warning(
                "Exchange is busy (%s): backing off %.2fs before retry %d/%d",
                what,
                wait,
                attempt,
                conn.max_retries,
            )
            sleep(wait)
        except Exception as err:
            raise translate(conn, what, err) from None


def translate(conn: ExchangeConnection, what: str, err: Exception) -> Exception:
    """Map an exchangelib/requests exception to a syncd error (or return it unchanged
    when it is not about the connection)."""
    if isinstance(err, ConnectionFailed | TargetError | SecretError):
        return err
    if isinstance(err, ewserr.UnauthorizedError):
        return ConnectionFailed(
            f"Exchange {conn.endpoint} refused the credentials of "
            f"{conn.username or 'the OAuth client'} (HTTP 401): check username, password "
            f"and auth: {conn.auth}"
        )
    if isinstance(err, ewserr.ErrorAccessDenied | ewserr.ErrorImpersonateUserDenied):
        return ConnectionFailed(
            f"Exchange {conn.endpoint} denied access to mailbox {conn.mailbox}: {err}"
        )
    if isinstance(err, ewserr.TransportError) and "certificate" in str(err).lower():
        return ConnectionFailed(
            f"TLS to {conn.endpoint} failed: {_short(err)} (set ca_file to your CA's PEM)"
        )
    if isinstance(err, ewserr.ErrorTimeoutExpired | requests.exceptions.ConnectionError):
        return ConnectionFailed(f"Exchange {conn.endpoint} is unreachable: {_short(err)}")
    if isinstance(err, ewserr.TransportError) and not isinstance(err, ewserr.ResponseMessageError):
        return TargetError(f"Exchange {conn.endpoint} failed during {what}: {_short(err)}")
    if isinstance(err, ewserr.ResponseMessageError):
        return TargetError(f"Exchange refused {what}: {type(err).__name__}: {_short(err)}")
    return err


_UNKNOWN_FAILURE = re.compile(
    r"Unknown failure in response\. Code: (\d+) headers: .*? content: ", re.S
)


def _short(err: Exception) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    # exchangelib puts the whole response header dict (cookies included) into this
    # message: keep the status and a little of the body only.
    text = _UNKNOWN_FAILURE.sub(lambda m: f"HTTP {m.group(1)}: ", text)
    return text[:300]
