"""A small client of KRAFTD billing's service API (docs/integrating.md).

Every call sends the service credential as `Authorization: Bearer`. Writes
that create something carry an `Idempotency-Key` chosen by the caller, so a
retry (ours, on a 5xx or a dropped connection, or the caller's own) is the
same request and counts once. Errors come back as `BillingError`s carrying
the service's `{"error": {"code", "message", ...}}`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

# Statuses worth a retry with the very same request: the service (or the
# path to it) failed, and the request may or may not have been applied. The
# Idempotency-Key makes the retry safe.
RETRYABLE = {500, 502, 503, 504}
# The longest Retry-After waited for inside one call.
MAX_RETRY_AFTER = 5


class BillingError(Exception):
    """An error answer of the billing service, or no answer at all."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        error: dict[str, Any] | None = None,
        headers: httpx.Headers | None = None,
    ):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.error = error or {}
        self.headers = headers or httpx.Headers()

    @property
    def upgrade_url(self) -> str | None:
        return self.headers.get("x-upgrade-url")

    @property
    def retry_after(self) -> int | None:
        return _seconds(self.headers.get("retry-after"))


class QuotaExceeded(BillingError):
    """403 `quota_exceeded` (a monthly or gauge limit), or 429 (the daily
    API calls): `error` has metric, limit, limit_value, usage, requested,
    plan, upgrade_to and resets_at."""


class NotInPlan(BillingError):
    """403 `not_in_plan`: a feature or export format the plan lacks."""


class ReservationClosed(BillingError):
    """409 `reservation_closed`: committed, released or expired already."""


class BillingUnavailable(BillingError):
    """5xx or no answer, still so after the retries."""


_BY_CODE = {
    "quota_exceeded": QuotaExceeded,
    "not_in_plan": NotInPlan,
    "reservation_closed": ReservationClosed,
}


@dataclass
class Reservation:
    id: str
    metric: str
    quantity: int
    status: str  # held, committed, released or expired
    expires_at: str
    replayed: bool  # the answer of an earlier request with the same key
    committed_quantity: int | None = None

    @classmethod
    def of(cls, body: dict[str, Any], replayed: bool) -> "Reservation":
        return cls(
            id=body["id"],
            metric=body["metric"],
            quantity=body["quantity"],
            status=body["status"],
            expires_at=body["expires_at"],
            replayed=replayed,
            committed_quantity=body.get("committed_quantity"),
        )


@dataclass
class _Cached:
    etag: str
    body: dict[str, Any]
    fresh_until: float


@dataclass
class BillingClient:
    """`base_url` is the service's root (`http://127.0.0.1:7071`), without
    `/api`. `retries` extra tries on 5xx and transport errors, `backoff`
    seconds doubling between them."""

    base_url: str
    credential: str
    retries: int = 3
    backoff: float = 0.2
    timeout: float = 10.0
    http: httpx.AsyncClient | None = None
    _cache: dict[str, _Cached] = field(default_factory=dict)

    async def __aenter__(self) -> "BillingClient":
        if self.http is None:
            self.http = httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self.http is not None:
            await self.http.aclose()
            self.http = None

    # -- the calls -----------------------------------------------------------

    async def report_usage(
        self,
        account_id: str,
        metric: str,
        quantity: int,
        idempotency_key: str,
        *,
        feature: str | None = None,
        format: str | None = None,
    ) -> dict[str, Any]:
        """POST /api/accounts/{id}/usage: records once per key; answers where
        the metric stands (`used`, `held`, `limit`, `remaining`, ...)."""
        body: dict[str, Any] = {"metric": metric, "quantity": quantity}
        if feature is not None:
            body["feature"] = feature
        if format is not None:
            body["format"] = format
        response = await self._send(
            "POST",
            f"/api/accounts/{account_id}/usage",
            json=body,
            headers={"Idempotency-Key": idempotency_key},
        )
        self._cache.pop(account_id, None)
        return response.json()

    async def reserve(
        self,
        account_id: str,
        metric: str,
        quantity: int,
        idempotency_key: str,
        *,
        ttl_seconds: int | None = None,
    ) -> Reservation:
        """POST /api/accounts/{id}/reservations: holds quota, once per key.
        The same key answers the same reservation, in whatever state it is
        now (`held`, `committed`, `released`, `expired`)."""
        body: dict[str, Any] = {"metric": metric, "quantity": quantity}
        if ttl_seconds is not None:
            body["ttl_seconds"] = ttl_seconds
        response = await self._send(
            "POST",
            f"/api/accounts/{account_id}/reservations",
            json=body,
            headers={"Idempotency-Key": idempotency_key},
        )
        self._cache.pop(account_id, None)
        return Reservation.of(response.json(), response.headers.get("idempotent-replayed") == "true")

    async def commit(
        self, account_id: str, reservation_id: str, quantity: int | None = None
    ) -> Reservation:
        """Records what was used (all of the hold when `quantity` is None)
        and releases the rest. The same commit again answers the same."""
        body = {} if quantity is None else {"quantity": quantity}
        response = await self._send(
            "POST", f"/api/accounts/{account_id}/reservations/{reservation_id}/commit", json=body
        )
        self._cache.pop(account_id, None)
        return Reservation.of(response.json(), False)

    async def release(self, account_id: str, reservation_id: str) -> Reservation:
        """Gives the whole hold back. Releasing again answers the same."""
        response = await self._send(
            "DELETE", f"/api/accounts/{account_id}/reservations/{reservation_id}"
        )
        self._cache.pop(account_id, None)
        return Reservation.of(response.json(), False)

    async def set_gauge(
        self, account_id: str, metric: str, value: int, observed_at: str
    ) -> dict[str, Any]:
        """PUT /api/accounts/{id}/gauges/{metric}: an older `observed_at`
        than the stored one changes nothing (`applied: false`)."""
        response = await self._send(
            "PUT",
            f"/api/accounts/{account_id}/gauges/{metric}",
            json={"value": value, "observed_at": observed_at},
        )
        self._cache.pop(account_id, None)
        return response.json()

    async def report_batch(self, account_id: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """POST /api/accounts/{id}/usage/batch: up to 1000 events, each
        `{id, metric, quantity, occurred_at}` counted once by its id."""
        response = await self._send(
            "POST", f"/api/accounts/{account_id}/usage/batch", json={"events": events}
        )
        self._cache.pop(account_id, None)
        return response.json()["results"]

    async def entitlements(self, account_id: str, *, revalidate: bool = False) -> dict[str, Any]:
        """GET /api/accounts/{id}/entitlements, cached for the answer's
        max-age; after that (or with `revalidate`) asked again with
        If-None-Match, where a 304 keeps the cached body. Our own writes
        above drop the account's entry; other services' writes show within
        max-age."""
        cached = self._cache.get(account_id)
        if cached and not revalidate and time.monotonic() < cached.fresh_until:
            return cached.body
        headers = {"If-None-Match": cached.etag} if cached else {}
        response = await self._send(
            "GET", f"/api/accounts/{account_id}/entitlements", headers=headers
        )
        if response.status_code == 304 and cached:
            body = cached.body
        else:
            body = response.json()
        etag = response.headers.get("etag")
        if etag:
            self._cache[account_id] = _Cached(
                etag, body, time.monotonic() + _max_age(response.headers.get("cache-control"))
            )
        return body

    # -- the transport -------------------------------------------------------

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One request, retried unchanged (same body, same Idempotency-Key)
        on a 5xx or a transport error; a 4xx is never retried."""
        if self.http is None:
            raise RuntimeError("use the client as `async with BillingClient(...)`")
        all_headers = {"Authorization": f"Bearer {self.credential}", **(headers or {})}
        delay = self.backoff
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = await self.http.request(method, path, json=json, headers=all_headers)
            except httpx.TransportError as e:
                if last:
                    raise BillingUnavailable(0, "unreachable", str(e)) from e
            else:
                if response.status_code < 400:
                    return response
                after = _seconds(response.headers.get("retry-after"))
                # A 429 is retried only when Retry-After is short: on these
                # routes it is the daily API calls, used up until midnight.
                short = after is not None and after <= MAX_RETRY_AFTER
                retryable = response.status_code in RETRYABLE or (
                    response.status_code == 429 and short
                )
                if not retryable or last:
                    raise _error(response)
                if short:
                    delay = max(delay, float(after))
            await asyncio.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")


def _error(response: httpx.Response) -> BillingError:
    try:
        error = response.json()["error"]
        code, message = error["code"], error["message"]
    except (ValueError, KeyError, TypeError):
        error, code, message = {}, "unexpected_answer", response.text[:200]
    if response.status_code >= 500:
        kind = BillingUnavailable
    else:
        kind = _BY_CODE.get(code, BillingError)
    return kind(response.status_code, code, message, error, response.headers)


def _seconds(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def _max_age(cache_control: str | None) -> float:
    for part in (cache_control or "").split(","):
        name, _, value = part.strip().partition("=")
        if name == "max-age" and value.isdigit():
            return float(value)
    return 0.0
