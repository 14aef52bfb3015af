"""The document dependency against the real billing service."""

from __future__ import annotations

import asyncio

import httpx
from fastapi.testclient import TestClient

from kraftd_example.billing import BillingClient

from .conftest import Billing


def documents(billing: Billing, account_id: str) -> dict:
    """Where the account's documents stand, read straight from the service."""
    response = httpx.get(
        f"{billing.url}/api/accounts/{account_id}/entitlements",
        headers={"Authorization": f"Bearer {billing.service_key}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()["usage"]["documents"]


def test_a_processed_document_is_committed(billing: Billing, account_id: str, app_client: TestClient):
    before = documents(billing, account_id)
    assert (before["used"], before["held"]) == (0, 0)

    response = app_client.post("/documents/doc-1", json={"content": "three small words"})

    assert response.status_code == 200, response.text
    assert response.json()["words"] == 3
    after = documents(billing, account_id)
    assert (after["used"], after["held"]) == (1, 0)
    assert after["remaining"] == before["remaining"] - 1


def test_a_failed_document_is_released(billing: Billing, account_id: str, app_client: TestClient):
    before = documents(billing, account_id)

    unreadable = app_client.post("/documents/doc-2", json={"content": "%CORRUPT"})
    crashed = app_client.post("/documents/doc-3", json={"content": "%CRASH"})

    assert unreadable.status_code == 422, unreadable.text
    assert crashed.status_code == 500, crashed.text
    after = documents(billing, account_id)
    # Nothing used, nothing left held: the quota is whole.
    assert (after["used"], after["held"]) == (0, 0)
    assert after["remaining"] == before["remaining"] == before["limit"]


def test_a_retried_document_counts_once(billing: Billing, account_id: str, app_client: TestClient):
    first = app_client.post("/documents/doc-4", json={"content": "once"})
    again = app_client.post("/documents/doc-4", json={"content": "once"})

    assert first.status_code == again.status_code == 200
    # The same hold, replayed: committing it again changed nothing.
    assert first.json()["reservation_id"] == again.json()["reservation_id"]
    assert documents(billing, account_id)["used"] == 1


def test_a_document_that_failed_then_succeeds_counts_once(
    billing: Billing, account_id: str, app_client: TestClient
):
    failed = app_client.post("/documents/doc-5", json={"content": "%CORRUPT"})
    fixed = app_client.post("/documents/doc-5", json={"content": "now readable"})
    retried = app_client.post("/documents/doc-5", json={"content": "now readable"})

    assert failed.status_code == 422
    assert fixed.status_code == retried.status_code == 200
    # The released first hold burnt its key; the retry took the next key in
    # the chain, and the third request found that one committed.
    assert fixed.json()["reservation_id"] == retried.json()["reservation_id"]
    usage = documents(billing, account_id)
    assert (usage["used"], usage["held"]) == (1, 0)


def test_at_the_monthly_limit_the_client_gets_403_with_the_upgrade(
    billing: Billing, account_id: str, app_client: TestClient
):
    plan = app_client.get("/account/plan")
    assert plan.status_code == 200, plan.text
    assert plan.json()["plan"] == "free"
    limit = plan.json()["documents"]["limit"]
    assert isinstance(limit, int) and limit > 0

    for n in range(limit):
        ok = app_client.post(f"/documents/fill-{n}", json={"content": "page"})
        assert ok.status_code == 200, ok.text
    refused = app_client.post("/documents/one-too-many", json={"content": "page"})

    assert refused.status_code == 403, refused.text
    detail = refused.json()["detail"]
    assert detail["code"] == "quota_exceeded"
    assert detail["metric"] == "documents"
    assert (detail["limit"], detail["usage"]) == (limit, limit)
    assert (detail["plan"], detail["upgrade_to"]) == ("free", "pro")
    assert detail["upgrade_url"] and "pro" in detail["upgrade_url"]
    assert refused.headers["x-upgrade-url"] == detail["upgrade_url"]
    usage = documents(billing, account_id)
    assert (usage["used"], usage["held"], usage["remaining"]) == (limit, 0, 0)
    # A document already processed is still answered at the limit: its
    # retry replays the committed hold instead of asking for a new one.
    assert app_client.post("/documents/fill-0", json={"content": "page"}).status_code == 200


def test_entitlements_are_cached_and_revalidated_with_the_etag(billing: Billing, account_id: str):
    async def run() -> None:
        async with BillingClient(billing.url, billing.service_key) as client:
            sent: list[httpx.Request] = []
            seen: list[int] = []
            assert client.http is not None
            client.http.event_hooks["request"].append(lambda r: _append(sent, r))
            client.http.event_hooks["response"].append(lambda r: _append(seen, r.status_code))

            first = await client.entitlements(account_id)
            cached = await client.entitlements(account_id)  # within max-age: no request
            revalidated = await client.entitlements(account_id, revalidate=True)

            assert first == cached == revalidated
            assert seen == [200, 304]
            assert sent[1].headers["if-none-match"]

    asyncio.run(run())


async def _append(items: list, item: object) -> None:
    items.append(item)
