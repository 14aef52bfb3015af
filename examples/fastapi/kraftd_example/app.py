"""KRAFTD's document backend, cut down to what touches billing.

`POST /documents/{document_id}` processes a document. Before it runs, the
`document_quota` dependency holds one document of the account's monthly
quota; when the endpoint returns, the hold is committed, and when it fails
(any exception, a cancelled request included) the hold is released, so a
failed document costs nothing. `GET /account/plan` reads the account's
entitlements for the app's own screens.

Run it against a local billing service (examples/fastapi/README.md):

    KRAFTD_BILLING_URL=http://127.0.0.1:7071 KRAFTD_BILLING_KEY=kbsk_... \\
        uvicorn kraftd_example.app:create_app --factory --port 8000
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from pydantic import BaseModel

from .billing import (
    BillingClient,
    BillingError,
    BillingUnavailable,
    NotInPlan,
    QuotaExceeded,
    Reservation,
    ReservationClosed,
)

log = logging.getLogger("kraftd_example")

# How long a hold lasts unless committed or released: longer than any
# document takes, so a slow document is not let go half-way.
HOLD_SECONDS = 600
# A document that failed this many times today is refused (see
# `hold_for_document`).
MAX_ATTEMPTS = 20
_KEY_SAFE = re.compile(r"^[!-~]{1,200}$")


def document_key(document_id: str, attempt: int) -> str:
    """The Idempotency-Key of a document's `attempt`-th hold: the document id
    itself when it is short printable ASCII, else its SHA-256. Keys are
    per account already, so they need not name it."""
    if _KEY_SAFE.match(document_id):
        base = document_id
    else:
        base = "sha256:" + hashlib.sha256(document_id.encode()).hexdigest()
    return f"document:{base}" if attempt == 0 else f"document:{base}:retry-{attempt}"


async def hold_for_document(
    billing: BillingClient, account_id: str, document_id: str
) -> Reservation:
    """Holds one document for `document_id`, once however often it is asked.

    A key names one reservation for 24 hours, in whatever state it ends, so
    a retry finds what the earlier attempt left: `held` (it is still
    running, or died before closing it) or `committed` (it succeeded: the
    retry costs nothing more) are used as they are; `released` or `expired`
    (it failed) burn that key, and the next key in the chain
    `document:<id>`, `document:<id>:retry-1`, ... is tried. Every process
    walks the same chain, so a document is billed at most once."""
    for attempt in range(MAX_ATTEMPTS):
        key = document_key(document_id, attempt)
        hold = await billing.reserve(
            account_id, "documents", 1, key, ttl_seconds=HOLD_SECONDS
        )
        if hold.status in ("held", "committed"):
            return hold
    raise HTTPException(
        409,
        detail={
            "code": "too_many_attempts",
            "message": f"this document failed {MAX_ATTEMPTS} times; try again tomorrow",
        },
    )


def upgrade_detail(e: BillingError) -> dict[str, Any]:
    """What the app's client needs to show the upgrade prompt."""
    detail = {
        "code": e.code,
        "message": e.message,
        "plan": e.error.get("plan"),
        "upgrade_to": e.error.get("upgrade_to"),
        "upgrade_url": e.upgrade_url,
    }
    if isinstance(e, QuotaExceeded):
        detail.update(
            metric=e.error.get("metric"),
            limit=e.error.get("limit_value"),
            usage=e.error.get("usage"),
            resets_at=e.error.get("resets_at"),
        )
    return detail


def get_billing(request: Request) -> BillingClient:
    return request.app.state.billing


def current_account(x_account_id: Annotated[str, Header()]) -> str:
    """Stands in for the app's own sign-in: which billing account the
    request's user works in."""
    return x_account_id


Billing = Annotated[BillingClient, Depends(get_billing)]
AccountId = Annotated[str, Depends(current_account)]


async def document_quota(
    document_id: str, account_id: AccountId, billing: Billing
) -> AsyncIterator[Reservation]:
    """Reserve one document, yield, then commit on success or release on
    failure. Used with `scope="function"`, so the hold is closed before the
    response leaves: the client never sees success for an unbilled document."""
    try:
        hold = await hold_for_document(billing, account_id, document_id)
    except (QuotaExceeded, NotInPlan) as e:
        headers = {"X-Upgrade-Url": e.upgrade_url} if e.upgrade_url else None
        raise HTTPException(403, detail=upgrade_detail(e), headers=headers) from e
    except BillingUnavailable as e:
        # Fail closed: without a hold the document is not processed.
        raise HTTPException(
            503,
            detail={"code": "billing_unavailable", "message": "try again shortly"},
            headers={"Retry-After": "5"},
        ) from e
    try:
        yield hold
    except BaseException:
        # Shielded: a cancelled request (client gone) still gives the hold
        # back. If even this fails, the hold expires by itself.
        with anyio.CancelScope(shield=True):
            try:
                await billing.release(account_id, hold.id)
            except ReservationClosed:
                pass  # an earlier attempt with this hold succeeded: billed once
            except BillingError:
                log.warning("release of %s failed; it expires by itself", hold.id, exc_info=True)
        raise
    try:
        await billing.commit(account_id, hold.id)
    except ReservationClosed:
        # Expired (processing outlasted HOLD_SECONDS) or released by a
        # concurrent failed attempt: the document is done but not billed.
        log.warning("document %s processed on a closed hold %s", document_id, hold.id)


class DocumentIn(BaseModel):
    content: str


class DocumentOut(BaseModel):
    document_id: str
    words: int
    reservation_id: str


def process(content: str) -> int:
    """The real work. A document that cannot be read fails."""
    if content.startswith("%CORRUPT"):
        raise HTTPException(422, detail={"code": "unreadable_document", "message": "cannot read it"})
    if content.startswith("%CRASH"):
        raise RuntimeError("the parser crashed")
    return len(content.split())


def create_app(billing_url: str | None = None, credential: str | None = None) -> FastAPI:
    billing_url = billing_url or os.environ["KRAFTD_BILLING_URL"]
    credential = credential or os.environ["KRAFTD_BILLING_KEY"]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with BillingClient(billing_url, credential) as billing:
            app.state.billing = billing
            yield

    app = FastAPI(title="KRAFTD documents (billing example)", lifespan=lifespan)

    @app.post("/documents/{document_id}")
    async def process_document(
        document_id: str,
        document: DocumentIn,
        hold: Annotated[Reservation, Depends(document_quota, scope="function")],
    ) -> DocumentOut:
        words = process(document.content)
        return DocumentOut(document_id=document_id, words=words, reservation_id=hold.id)

    @app.get("/account/plan")
    async def account_plan(account_id: AccountId, billing: Billing) -> dict[str, Any]:
        """The plan and the documents left this month, for the app's screens."""
        try:
            e = await billing.entitlements(account_id)
        except BillingUnavailable as err:
            raise HTTPException(503, detail={"code": "billing_unavailable", "message": "try again shortly"}) from err
        return {
            "plan": e["plan"],
            "upgrade_to": e["upgrade_to"],
            "over_limit": e["over_limit"],
            "ai_features": e["limits"]["ai_features"],
            "export_formats": e["limits"]["export_formats"],
            "documents": e["usage"]["documents"],
        }

    return app
