"""One client for Prometheus' HTTP API (or Thanos/Mimir/Cortex, same API): instant PromQL queries, bounded in time.

Every source that asks Prometheus (`PrometheusSource` for the pods' metrics, `PrometheusActivationSource`
for the gateway's queue) goes through `PromQLClient`, so TLS, the bearer token, the timeout and what an
error says are the same for both:

- TLS: a CA file to trust, else the system's CAs; `insecure_skip_verify` turns verification off (logged).
- The bearer token goes in the `Authorization` header of every query, and never into a message: `scrub`
  replaces it (as sent and percent-encoded) by `***`, drops the long query string, and bounds the length.
  Given as a `TokenFile`, it is read again whenever the file changes (a projected ServiceAccount token is
  rotated by the kubelet, and the old one expires), and every token used so far stays scrubbed.
- Every query has the client's timeout (connect and each read); no retries: the next cycle is the retry,
  and a cycle must stay bounded in time.
- `query` answers the series of an instant vector as `(labels, timestamp, value)` and raises only
  `PromQLError`, whose text says what went wrong (refused, timed out, HTTP status and Prometheus' own
  error, not JSON, not an instant vector, a malformed series).

Built on the project's dependency prometheus-api-client (`PrometheusConnect`), which fits: it takes a
`requests.Session` (so `verify` is the CA file or off), the headers (the token), a timeout for every
request and a urllib3 `Retry` (none). Its `custom_query` hands back `data.result` without the answer's
`resultType`, so `instant_vector` checks the shape of the series itself.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import quote

import requests
from prometheus_api_client import PrometheusConnect
from urllib3.util.retry import Retry

from kedascaler.kits.watchedfile import TokenFile

log = logging.getLogger("kedascaler.sources.promql")

Series = tuple[dict[str, str], float, float]  # one series of an instant vector: (labels, timestamp, value)
BearerToken = str | TokenFile  # a token, or the file that holds the current one

MAX_MESSAGE = 300  # characters of an error's text
_QUERY_STRING = re.compile(r"\?query=[^\s)]*")
# No retries: a failed connection is one error, and a read timeout is re-raised as itself (ReadTimeout), not
# wrapped in "max retries exceeded".
_NO_RETRY = Retry(total=0, read=False, raise_on_status=False)


class PromQLError(Exception):
    """A query failed; the text says why, already scrubbed of the bearer token."""


class PromQLClient:
    """Instant queries against one Prometheus, with TLS, an optional bearer token and a timeout on every call."""

    def __init__(self, url: str, *, bearer_token: BearerToken | None = None, ca_file: str | None = None,
                 insecure_skip_verify: bool = False, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._token_file = bearer_token if isinstance(bearer_token, TokenFile) else None
        token: str | None
        if isinstance(bearer_token, TokenFile):
            token = bearer_token.token()
        else:
            token = bearer_token or None
        self._secret: str | None = token  # the token in use now
        self._secrets: list[str] = [token] if token else []  # every token used so far: all scrubbed
        session = requests.Session()
        session.verify = ca_file if ca_file else not insecure_skip_verify
        if insecure_skip_verify and not ca_file:
            log.warning("prometheus: TLS certificate verification is off for %s", self.url)
        headers = {"Authorization": f"Bearer {token}"} if token else None
        self._api = PrometheusConnect(self.url, headers=headers, session=session, timeout=timeout,
                                      retry=_NO_RETRY)

    def _current_token(self) -> None:
        """Put the token file's current token in the header, when it changed (a stat per query)."""
        if self._token_file is None:
            return
        token = self._token_file.token()  # the last good one if the file cannot be read now
        if token != self._secret:
            self._secret = token
            self._secrets = [*self._secrets[-7:], token]
            self._api.headers = {"Authorization": f"Bearer {token}"}

    def __repr__(self) -> str:
        return f"PromQLClient({self.url!r}, token={'set' if self.has_token else 'none'})"

    @property
    def has_token(self) -> bool:
        """Whether queries carry a bearer token (for a repr that never shows it)."""
        return self._secret is not None

    def query(self, promql: str) -> list[Series]:
        """The series of `promql`'s instant vector; PromQLError (scrubbed) on any failure, never anything else."""
        try:
            self._current_token()
            result = self._api.custom_query(promql, timeout=self.timeout)
        except (KeyError, TypeError) as e:  # HTTP 200 without `data.result`, or not a JSON object at all
            raise PromQLError(self.scrub(ValueError(f"malformed answer: no data.result ({type(e).__name__}: {e})"))
                              ) from None
        except Exception as e:  # noqa: BLE001 - refused, timed out, TLS, HTTP status, not JSON: all one kind here
            raise PromQLError(self.scrub(e)) from None
        try:
            return instant_vector(result)
        except ValueError as e:
            raise PromQLError(self.scrub(e)) from None

    def scrub(self, error: BaseException) -> str:
        """The error's type and text, without the bearer token should anything have echoed it."""
        text = f"{type(error).__name__}: {error}"
        text = _QUERY_STRING.sub("?query=…", text)  # the PromQL is long and known: keep room for the cause
        for secret in self._secrets:
            for form in {secret, quote(secret, safe="")}:
                text = text.replace(form, "***")
        return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + "…"

    def close(self) -> None:
        self._api.close()


def instant_vector(result: Any) -> list[Series]:
    """(labels, timestamp, value) per series of an instant vector's `data.result`; ValueError when it is not one."""
    if not isinstance(result, list):
        raise ValueError(f"malformed answer: expected a vector, got {type(result).__name__}")
    if len(result) == 2 and not any(isinstance(item, dict) for item in result):
        raise ValueError(f"malformed answer: expected a vector, got a scalar or a string: {result!r:.100}")
    rows = []
    for item in result:
        try:
            if isinstance(item, dict) and "values" in item and "value" not in item:
                raise TypeError("a range vector's series (values), not an instant vector's (value)")
            labels = item["metric"]
            ts, raw = item["value"]
            if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
                raise TypeError(f"labels are not a map of strings: {labels!r:.100}")
            if isinstance(raw, bool) or isinstance(ts, bool) or not isinstance(raw, (str, int, float)):
                raise TypeError(f"sample value is not a number: {raw!r:.100}")
            rows.append((dict(labels), float(ts), float(raw)))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"malformed series in the answer: {e!r}") from None
    return rows


class PromQLReader:
    """What a source that reads Prometheus shares: its client, its `url`, a repr that never shows the token,
    and `close()`."""

    _client: PromQLClient

    @property
    def url(self) -> str:
        return self._client.url

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r}, token={'set' if self._client.has_token else 'none'})"

    def close(self) -> None:
        self._client.close()


__all__ = ["BearerToken", "PromQLClient", "PromQLError", "PromQLReader", "Series", "instant_vector"]
