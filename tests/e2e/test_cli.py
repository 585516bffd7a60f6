"""The ``callboard`` command as a newcomer runs it: real processes, real sockets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support import free_port

CLI = [sys.executable, "-m", "service.cli"]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBOARD_")}
    env.update({"CALLBOARD_DATA_DIR": str(tmp_path / "data"), **extra})
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(CLI + args, env=env, capture_output=True, text=True, timeout=60)


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    env = _env(tmp_path)
    created = _run(["keys", "create", "--account", "acme", "--max-jobs", "3"], env)
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert secret.startswith("cb_")
    listed = _run(["keys", "list"], env)
    assert "acme" in listed.stdout and secret not in listed.stdout and "active" in listed.stdout
    prefix = secret[:10]
    revoked = _run(["keys", "revoke", prefix], env)
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked" in _run(["keys", "list", "--account", "acme"], env).stdout
    again = _run(["keys", "revoke", prefix], env)
    assert again.returncode == 1


def test_bad_setting_is_a_clear_error(tmp_path: Path) -> None:
    res = _run(["keys", "list"], _env(tmp_path, CALLBOARD_PORT="eighty"))
    assert res.returncode == 2
    assert "CALLBOARD_PORT must be a whole number" in res.stderr


@pytest.mark.timeout_sensitive
def test_serve_starts_prints_a_key_and_answers(tmp_path: Path) -> None:
    port = free_port()
    env = _env(tmp_path, CALLBOARD_PORT=str(port))
    proc = subprocess.Popen(
        CLI + ["serve"], env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, "serve exited"
            assert time.monotonic() < deadline, "serve did not become ready"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=40)
        # uvicorn shuts down gracefully, then re-raises the signal it caught
        assert proc.returncode in (0, -signal.SIGTERM)
        assert "Finished server process" in err or "Shutting down" in err
        key = next(line.strip() for line in err.splitlines() if line.strip().startswith("cb_"))
        assert len(key) > 20
    finally:
        if proc.poll() is None:
            proc.kill()


def test_accounts_update_sets_limits_and_default_reply_url(tmp_path: Path) -> None:
    env = _env(tmp_path)
    assert _run(["keys", "create", "--account", "acme"], env).returncode == 0
    ok = _run(
        [
            "accounts",
            "update",
            "acme",
            "--max-jobs",
            "9",
            "--default-reply-url",
            "https://hooks.example.com/x",
        ],
        env,
    )
    assert ok.returncode == 0, ok.stderr
    listed = _run(["accounts", "list"], env).stdout
    assert "acme" in listed and " 9 " in listed and "https://hooks.example.com/x" in listed
    private = _run(["accounts", "update", "acme", "--default-reply-url", "http://10.0.0.1/x"], env)
    assert private.returncode == 2 and "private" in private.stderr
    assert _run(["accounts", "update", "nobody", "--max-jobs", "2"], env).returncode == 1
    cleared = _run(["accounts", "update", "acme", "--default-reply-url", ""], env)
    assert cleared.returncode == 0
    assert "https://hooks.example.com/x" not in _run(["accounts", "list"], env).stdout
