"""The official runwayml SDK waits for a real render: ``create(...).wait_for_task_output()``
against a live Callboard with its embedded worker and the local engine."""

from __future__ import annotations

import httpx
import pytest
import runwayml

from service.api.app import create_app
from tests.integration import runner_support as rs
from tests.support import MEDIA, free_port, live_server

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (MEDIA / "character_photo.jpg").exists(), reason="shared media missing"),
]


def test_sdk_waits_for_output_and_gets_a_playable_24fps_mp4_of_the_ratio(
    settings, db, make_account, tmp_path, tmp_path_factory
) -> None:
    port = free_port()
    served = settings.replace(public_base_url=f"http://127.0.0.1:{port}")
    app = create_app(served, database=db, embedded_worker=True)
    _, key = make_account("sdk-wait")
    reference = rs.short_reference(tmp_path_factory.getbasetemp() / "runner-clips")
    payload = rs.body(MEDIA / "character_photo.jpg", reference)
    with live_server(app, port=port) as url:
        sdk = runwayml.RunwayML(api_key=key, base_url=url, max_retries=0)
        task = sdk.character_performance.create(
            model="act_two",
            character=payload["character"],
            reference=payload["reference"],
            ratio="720:1280",
            seed=11,
        ).wait_for_task_output(timeout=300)
        assert task.status == "SUCCEEDED"
        assert task.output and task.output[0].startswith(url)
        video = tmp_path / "out.mp4"
        video.write_bytes(httpx.get(task.output[0], timeout=30).raise_for_status().content)
    assert rs.probe_mp4(video) == (720, 1280, 24.0)
