"""A database that cannot be reached is a 503 to retry, with the error shape and
Retry-After, never a 500: on the API (DRF) and on a page (Django's handler)."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.services import free_port

UNREACHABLE = {
    # Nothing listens there: the pool retries until its timeout, then gives up.
    "postgres": lambda tmp: {
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{free_port()}/gone",
        "WORKBENCH_DB_POOL_TIMEOUT": "1",
    },
    # A directory that does not exist: SQLite cannot open the file.
    "sqlite": lambda tmp: {
        "DATABASE_URL": None,
        "WORKBENCH_SQLITE_PATH": str(tmp / "missing" / "db.sqlite3"),
    },
}


@pytest.mark.parametrize("engine", sorted(UNREACHABLE))
def test_an_unreachable_database_answers_503_with_retry_after(engine, make_daphne_server, tmp_path):
    server = make_daphne_server(env=UNREACHABLE[engine](tmp_path))
    with httpx.Client(base_url=server.url, timeout=30) as http:
        api = http.post(
            "/api/tasks/1/tabs/", json={}, headers={"Authorization": "Token " + "a" * 40}
        )
        http.cookies.set("sessionid", "x" * 32)
        page = http.get("/")

    for response in (api, page):
        assert response.status_code == 503, (response.request.url, response.text)
        assert response.headers["Retry-After"] == "2"
        error = response.json()["error"]
        assert error["code"] == "unavailable"
        assert "Retry" in error["message"]
    assert "Traceback" not in api.text + page.text
