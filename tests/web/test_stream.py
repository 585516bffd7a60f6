"""``GET /v1/tasks/{id}/stream``: the task object as server-sent events."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import orjson

from service import tasks
from service.api import stream
from tests.support import live_server

BODY = {
    "model": "act_two",
    "character": {"type": "image", "uri": "https://example.com/c.jpg"},
    "reference": {"type": "video", "uri": "https://example.com/r.mp4"},
}


def _events(raw: str) -> list[dict[str, Any]]:
    """Parse an event stream into ``{"id", "data"}`` dicts (comments and retry skipped)."""
    out = []
    for block in raw.split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith((":", "retry:"))]
        if not lines:
            continue
        fields = dict(line.split(": ", 1) for line in lines)
        out.append({"id": fields.get("id"), "data": orjson.loads(fields["data"])})
    return out


def _create(client: Any, key: str) -> str:
    return client.post(
        "/v1/character_performance", headers={"Authorization": f"Bearer {key}"}, json=BODY
    ).json()["id"]


def test_a_finished_task_streams_its_object_once_and_ends(client: Any, make_account: Any) -> None:
    _, key = make_account()
    auth = {"Authorization": f"Bearer {key}"}
    task_id = _create(client, key)
    client.delete(f"/v1/tasks/{task_id}", headers=auth)
    answer = client.get(f"/v1/tasks/{task_id}/stream", headers=auth)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert answer.headers["cache-control"] == "no-cache"
    events = _events(answer.text)
    assert [e["data"] for e in events] == [client.get(f"/v1/tasks/{task_id}", headers=auth).json()]
    assert events[0]["data"]["status"] == "CANCELLED"


def test_a_client_that_saw_the_last_version_gets_nothing_new(client: Any, make_account: Any) -> None:
    _, key = make_account()
    auth = {"Authorization": f"Bearer {key}"}
    task_id = _create(client, key)
    client.delete(f"/v1/tasks/{task_id}", headers=auth)
    first = _events(client.get(f"/v1/tasks/{task_id}/stream", headers=auth).text)
    again = client.get(f"/v1/tasks/{task_id}/stream", headers={**auth, "Last-Event-ID": first[0]["id"]})
    assert _events(again.text) == []


def test_the_stream_needs_a_key_and_hides_other_tenants_tasks(client: Any, make_account: Any) -> None:
    _, key = make_account()
    _, other = make_account()
    task_id = _create(client, key)
    assert client.get(f"/v1/tasks/{task_id}/stream").status_code == 401
    foreign = client.get(f"/v1/tasks/{task_id}/stream", headers={"Authorization": f"Bearer {other}"})
    assert foreign.status_code == 404 and foreign.json()["code"] == "task_not_found"


def test_the_dashboard_session_may_open_the_stream(signed_in: Any) -> None:
    client = signed_in.client
    task_id = _create(client, signed_in.key)
    client.post(f"/ui/tasks/{task_id}/cancel", data={"csrf": signed_in.csrf})
    events = _events(client.get(f"/v1/tasks/{task_id}/stream").text)
    assert events[-1]["data"]["status"] == "CANCELLED"


def test_changes_are_streamed_live_and_the_stream_ends_after_a_terminal_state(
    settings: Any, db: Any, rt: Any, make_account: Any
) -> None:
    from service.api.app import create_app

    app = create_app(
        settings.replace(stream_poll_interval=0.05, stream_keepalive_seconds=1.0),
        clock=rt.clock,
        database=db,
        embedded_worker=False,
    )
    account, key = make_account()
    auth = {"Authorization": f"Bearer {key}"}
    received: list[str] = []
    with live_server(app) as base, httpx.Client(base_url=base, headers=auth, timeout=20) as http:
        task_id = http.post("/v1/character_performance", json=BODY).json()["id"]
        opened = threading.Event()

        def follow() -> None:
            with http.stream("GET", f"/v1/tasks/{task_id}/stream") as answer:
                for chunk in answer.iter_text():
                    received.append(chunk)
                    opened.set()

        reader = threading.Thread(target=follow, daemon=True)
        reader.start()
        assert opened.wait(10)

        def running(conn: Any) -> bool:
            return tasks.transition(
                conn,
                rt,
                task_id,
                expected=("PENDING",),
                values={"status": "RUNNING", "progress": 0.5},
                event="task.running",
            )

        rt.clock.advance(1)
        assert db.write_sync(running)
        rt.clock.advance(1)
        db.write_sync(lambda conn: tasks.cancel_or_delete(conn, rt, account["id"], task_id))
        reader.join(15)
        assert not reader.is_alive(), "the stream did not end after the terminal state"
        final = http.get(f"/v1/tasks/{task_id}").json()
    events = _events("".join(received))
    statuses = [e["data"]["status"] for e in events]
    assert statuses[0] == "PENDING" and statuses[-1] == "CANCELLED"
    assert {"id": events[-1]["id"], "data": final} == events[-1]
    assert len({e["id"] for e in events}) == len(events)


def test_an_idle_stream_sends_keep_alive_comments_and_holds_no_connection(
    settings: Any, db: Any, rt: Any, make_account: Any
) -> None:
    from service.api.app import create_app

    app = create_app(
        settings.replace(stream_poll_interval=30.0, stream_keepalive_seconds=1.0),
        clock=rt.clock,
        database=db,
        embedded_worker=False,
    )
    _, key = make_account()
    with (
        live_server(app) as base,
        httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=20) as http,
    ):
        task_id = http.post("/v1/character_performance", json=BODY).json()["id"]
        baseline = db.engine.pool.checkedout()  # SQLite's writer keeps its one connection
        seen = ""
        with http.stream("GET", f"/v1/tasks/{task_id}/stream") as answer:
            for chunk in answer.iter_text():
                seen += chunk
                if ": keep-alive" in seen:
                    checked_out = db.engine.pool.checkedout()
                    break
    assert checked_out == baseline
    assert len(_events(seen)) == 1


def test_the_stream_route_is_in_the_openapi_document(client: Any) -> None:
    doc = client.get("/openapi.json").json()
    op = doc["paths"]["/v1/tasks/{id}/stream"]["get"]
    assert "text/event-stream" in op["responses"]["200"]["content"]
    assert stream.version.__doc__
