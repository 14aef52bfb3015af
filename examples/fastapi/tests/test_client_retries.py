"""The client's retry rules, on a fake transport: the same request again on a
5xx or a dropped connection, never on a 4xx, and a 429 only when its
Retry-After is short."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from kraftd_example.billing import BillingClient, BillingUnavailable, QuotaExceeded

ACCOUNT = "ecafaf71-0e7e-4437-9e79-688518d0297d"
READING = {"metric": "documents", "used": 1, "held": 0, "limit": 3, "remaining": 2}


def run(answers: list, call):
    """Runs `call(client)` against answers given in turn; returns what it
    returned (or raised) and the requests sent."""
    sent: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def go():
        http = httpx.AsyncClient(base_url="http://billing", transport=httpx.MockTransport(handle))
        async with BillingClient("http://billing", "kbsk_test", backoff=0.001, http=http) as client:
            return await call(client)

    return asyncio.run(go()), sent


def report(client: BillingClient):
    return client.report_usage(ACCOUNT, "documents", 1, "document:doc-1")


def error(status: int, code: str, headers: dict | None = None) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": code}}, headers=headers)


def test_a_5xx_and_a_dropped_connection_are_retried_with_the_same_key():
    answers = [
        error(503, "temporarily_unavailable", {"Retry-After": "0"}),
        httpx.ConnectError("reset"),
        httpx.Response(200, json=READING),
    ]
    reading, sent = run(answers, report)
    assert reading == READING
    assert len(sent) == 3
    assert {r.headers["idempotency-key"] for r in sent} == {"document:doc-1"}
    assert {r.content for r in sent} == {sent[0].content}


def test_a_4xx_is_not_retried():
    with pytest.raises(QuotaExceeded) as refused:
        run([error(403, "quota_exceeded", {"X-Upgrade-Url": "https://kraftd.io/pricing?plan=pro"})], report)
    assert refused.value.upgrade_url == "https://kraftd.io/pricing?plan=pro"


def test_a_429_until_midnight_is_not_waited_for():
    with pytest.raises(QuotaExceeded) as refused:
        run([error(429, "quota_exceeded", {"Retry-After": "51603"})], report)
    assert refused.value.retry_after == 51603


def test_retries_end():
    with pytest.raises(BillingUnavailable):
        run([error(500, "internal_error")] * 4, report)
