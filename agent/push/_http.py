"""One HTTP POST with the store's auth headers, mapping failures to :class:`PushError`."""

from __future__ import annotations

import base64
import http.client
import socket
import urllib.error
import urllib.request
from typing import Dict
from typing import Optional

from hostprof.push import PushError

USER_AGENT = "hostprof-agent/0.1"
_RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}


def auth_headers(store) -> Dict[str, str]:
    """Authorization, tenant and extra headers for a :class:`hostprof.config.StoreConfig`."""
    headers = {"User-Agent": USER_AGENT}
    if store.basic_user or store.basic_password:
        token = base64.b64encode(f"{store.basic_user}:{store.basic_password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    elif store.bearer_token:
        headers["Authorization"] = f"Bearer {store.bearer_token}"
    if store.tenant:
        headers["X-Scope-OrgID"] = store.tenant
    headers.update(dict(store.headers))
    return headers


def post(url: str, body: bytes, headers: Dict[str, str], timeout: float) -> bytes:
    """POSTs ``body``; returns the response body on 2xx.

    Raises:
        PushError: retryable for connection errors, timeouts, 408/429/5xx; not retryable for
            other 4xx (the store will never accept this body).
    """
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.read()
    except urllib.error.HTTPError as exc:
        detail = _detail(exc)
        raise PushError(
            f"HTTP {exc.code} from {url}{detail}",
            retryable=exc.code in _RETRYABLE_STATUS,
            status=exc.code,
        ) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, socket.timeout) as exc:
        reason = getattr(exc, "reason", exc)
        raise PushError(f"cannot reach {url}: {reason}", retryable=True) from None


def _detail(exc: urllib.error.HTTPError) -> str:
    body: Optional[bytes] = None
    try:
        body = exc.read(300)
    except Exception:
        pass
    finally:
        exc.close()
    text = (body or b"").decode("utf-8", "replace").strip().replace("\n", " ")
    return f": {text}" if text else ""
