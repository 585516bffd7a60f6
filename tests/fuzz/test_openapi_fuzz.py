"""Schema-driven fuzzing of the whole API from its own ``/openapi.json`` (schemathesis).

Every operation in the document gets generated requests — valid ones and, in the
negative pass, ones that break the schema — sent over a real loopback socket to the app
with a valid key (and existing ids mixed in, so deeper code runs). Every answer must
be a non-5xx whose status, content type and body conform to the document.

The everyday suite runs a few examples per operation; ``CALLBOARD_PROOF=full`` runs
many more and writes the case count for the README (``scripts/proof``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.api.app import create_app
from tests.support import live_server

FULL = os.environ.get("CALLBOARD_PROOF") == "full"
EXAMPLES = 150 if FULL else 8
RESULTS = Path("/tmp/callboard-proof")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# the dashboard pages are HTML for browsers, not the JSON API the document describes
SKIP_PREFIXES = ("/ui",)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[dict[str, Any]]:
    """One app on SQLite for the whole module (fuzzing needs many requests, not a fresh
    database each), with an account, a task, a webhook and a delivery to aim at."""
    import shutil

    from service import accounts
    from service import settings as settings_mod
    from service.db import Database

    tmp = tmp_path_factory.mktemp("fuzz")
    shutil.copy(sqlite_template, tmp / "fuzz.db")
    settings = settings_mod.load(
        {
            "CALLBOARD_DATA_DIR": str(tmp / "data"),
            "CALLBOARD_DATABASE_URL": f"sqlite:///{tmp / 'fuzz.db'}",
            "CALLBOARD_SECRET_KEY": "fuzz-secret-key-0123456789",
            "CALLBOARD_RATE_LIMIT": "0",
            "CALLBOARD_MAX_BODY_BYTES": str(1024 * 1024),
        }
    )
    db = Database(settings.database_url)

    def unit(conn: Any) -> str:
        account = accounts.create_account(conn, "fuzz", 0.0, max_jobs=5)
        return accounts.create_key(conn, account["id"], 0.0)[0]

    key = db.write_sync(unit)
    app = create_app(settings, database=db, embedded_worker=False)
    with live_server(app) as base:
        h = {"Authorization": f"Bearer {key}"}
        task = requests.post(
            f"{base}/v1/character_performance",
            json={
                "model": "act_two",
                "character": {"type": "image", "uri": "https://example.com/c.jpg"},
                "reference": {"type": "video", "uri": "https://example.com/r.mp4"},
            },
            headers=h,
            timeout=10,
        ).json()
        hook = requests.post(
            f"{base}/v1/webhooks", json={"url": "https://hooks.example.com/f"}, headers=h, timeout=10
        )
        test = requests.post(f"{base}/v1/webhooks/{hook.json()['id']}/test", headers=h, timeout=10).json()
        document = requests.get(f"{base}/openapi.json", timeout=10).json()
        yield {
            "base": base,
            "key": key,
            "document": document,
            "ids": [task["id"], hook.json()["id"], test["deliveryId"]],
            "cases": 0,
            "statuses": {},
        }
    db.close()


def _operations(document: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (method.upper(), path)
        for path, ops in document["paths"].items()
        if not path.startswith(SKIP_PREFIXES)
        for method in ops
    ]


def _document() -> dict[str, Any]:
    from service.api import app as app_mod
    from service.api import openapi

    return openapi.build(app_mod.ROUTE_MODULES)


OPERATIONS = _operations(_document())


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_no_operation_answers_5xx_or_breaks_its_schema(
    served: dict[str, Any], method: str, path: str, mode: str
) -> None:
    config = schemathesis.config.SchemathesisConfig.from_dict({"generation": {"mode": mode}})
    schema = schemathesis.openapi.from_dict(served["document"], config=config)
    operation = schema[path][method]
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {served['key']}"
    seen = {"n": 0}

    @hypothesis.given(case=operation.as_strategy())
    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=not FULL,
        suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    def run(case: Any) -> None:
        if case.path_parameters and seen["n"] % 3 == 0:  # aim some at rows that exist
            for name in case.path_parameters:
                case.path_parameters[name] = served["ids"][seen["n"] % len(served["ids"])]
        seen["n"] += 1
        response = case.call(base_url=served["base"], session=session, timeout=30)
        served["statuses"][response.status_code] = served["statuses"].get(response.status_code, 0) + 1
        case.validate_response(response, checks=CHECKS)

    run()
    assert seen["n"] > 0, "schemathesis generated no case"
    served["cases"] += seen["n"]
    print(f"{mode} {method} {path}: {seen['n']} cases, statuses so far {served['statuses']}")
    if FULL:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "fuzz.json").write_text(
            json.dumps(
                {"cases": served["cases"], "statuses": served["statuses"], "operations": len(OPERATIONS)}
            )
        )
