"""/healthz without a Rasa: who sees what, and why it is not ready.

The plain server's NLU URL is a closed port, so it takes calls (components loaded) but is not
ready end to end. Anonymous clients see only the state; the health token and a console login
see the details.
"""

from __future__ import annotations

import httpx

from hotline.console import accounts
from hotline.console.web import COOKIE
from tests.servers import TEST_HEALTH_TOKEN, HotlineServer

PASSWORD = "correct horse battery staple 42"


def test_healthz_details_need_the_token_or_a_login(plain_server: HotlineServer) -> None:
    url = plain_server.url + "/healthz"
    anon = httpx.get(url)
    assert anon.status_code == 503
    assert anon.json() == {"status": "degraded"}
    wrong = httpx.get(url, headers={"Authorization": "Bearer not-the-token"})
    assert wrong.json() == {"status": "degraded"}
    assert httpx.get(url, cookies={COOKIE: "forged"}).json() == {"status": "degraded"}

    token = httpx.get(url, headers={"Authorization": f"Bearer {TEST_HEALTH_TOKEN}"})
    assert token.status_code == 503
    body = token.json()
    assert body["status"] == "degraded" and body["accepting_calls"] is True
    assert "unreachable" in body["checks"]["nlu"]
    assert body["checks"]["disk"] is None and body["checks"]["database"] is None

    done = plain_server.cli(
        "operators", "add", "hana", "--role", "operator", "--password-stdin", input=PASSWORD + "\n"
    )
    assert done.returncode == 0, done.stderr
    db = plain_server.db()
    try:
        cookie = accounts.create_session(db, "hana")
        db.conn.commit()
    finally:
        db.conn.close()
    logged_in = httpx.get(url, cookies={COOKIE: cookie})
    assert logged_in.status_code == 503
    assert logged_in.json()["checks"]["nlu"] == body["checks"]["nlu"]
