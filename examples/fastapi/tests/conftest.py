"""Starts the real `handler serve` on a free loopback port with a fresh data
directory, and gives each test a new Free account and a service key.

The binary is $KRAFTD_HANDLER, else target/debug/handler in the repository
(built by `cargo build --bin handler` or `cargo test`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from kraftd_example.app import create_app

REPO = Path(__file__).resolve().parents[3]
# Small, so the limit is reached in a few requests; the tests read the
# limit back from the entitlements rather than trusting this number.
FREE_DOCS = "3"
# Settings of the developer's shell that would point the handler elsewhere.
DROPPED = (
    "PORT", "BIND_ADDRESS", "DATA_DIR", "STORE", "KEY_VAULT_URL", "JWT_SECRET",
    "AUTH_ISSUERS", "STRIPE_SECRET_KEY", "STRIPE_API_BASE", "SMTP_URL",
    "FUNCTIONS_CUSTOMHANDLER_PORT",
)


@dataclass
class Billing:
    url: str  # the service's root, without /api
    service_key: str
    env: dict[str, str]
    log: Path


def handler_binary() -> Path:
    path = Path(os.environ.get("KRAFTD_HANDLER") or REPO / "target" / "debug" / "handler")
    if not path.is_file():
        pytest.exit(
            f"no handler binary at {path}: run `cargo build --bin handler` "
            "or set KRAFTD_HANDLER",
            returncode=2,
        )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, log: Path, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    with httpx.Client(timeout=1.0) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"handler exited ({process.returncode}):\n{log.read_text()[-4000:]}")
            try:
                if http.get(f"{url}/api/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    raise RuntimeError(f"handler not healthy within {within}s:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="session")
def billing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Billing]:
    handler = handler_binary()
    home = tmp_path_factory.mktemp("billing")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in DROPPED}
    env.update(
        DATA_DIR=str(home / "data"),
        FREE_PLAN_DOCS_LIMIT=FREE_DOCS,
        LOG_FORMAT="text",
        RUST_LOG="warn",
        WEB_DIST=str(home / "no-web-app"),
    )
    log = home / "handler.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(handler), "serve", "--port", str(port)],
            env=env, cwd=home, stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, log)
        created = subprocess.run(
            [str(handler), "service-keys", "create", "--name", "document-service",
             "--scopes", "usage:write,entitlements:read"],
            env=env, cwd=home, capture_output=True, text=True, timeout=60, check=True,
        )
        key = created.stdout.strip().splitlines()[-1]
        assert key.startswith("kbsk_"), created.stdout
        yield Billing(url, key, env, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def account_id(billing: Billing) -> str:
    """A newly registered user's own account, on Free."""
    with httpx.Client(base_url=f"{billing.url}/api", timeout=30) as http:
        registered = http.post(
            "/auth/register/with-plan",
            json={
                "email": f"ada+{uuid.uuid4().hex[:12]}@example.com",
                "password": "correct horse 9",
                "name": "Ada",
                "plan_id": "free",
            },
        )
        assert registered.status_code == 201, registered.text
        token = registered.json()["access_token"]
        accounts = http.get("/accounts", headers={"Authorization": f"Bearer {token}"})
        assert accounts.status_code == 200, accounts.text
        return accounts.json()["accounts"][0]["id"]


@pytest.fixture
def app_client(billing: Billing, account_id: str) -> Iterator[TestClient]:
    """The FastAPI app, talking to the real billing service, acting on
    `account_id` (the header stands in for the app's own sign-in)."""
    app = create_app(billing.url, billing.service_key)
    with TestClient(app, raise_server_exceptions=False, headers={"X-Account-Id": account_id}) as client:
        yield client
