"""The local storage backend: atomic writes, keys that cannot escape, streaming reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from service import storage


@pytest.fixture
def store(tmp_path: Path) -> storage.LocalStorage:
    return storage.LocalStorage(tmp_path / "files")


def test_a_streamed_write_appears_only_when_complete(store: storage.LocalStorage) -> None:
    with store.writer("outputs/t1/a.mp4") as out:
        out.write(b"hello ")
        assert store.stat("outputs/t1/a.mp4") is None  # nothing visible mid-write
        out.write(b"world")
    assert out.size == 11
    assert len(out.sha256) == 64
    assert b"".join(store.iter_chunks("outputs/t1/a.mp4")) == b"hello world"
    assert store.stat("outputs/t1/a.mp4") == storage.Stat(size=11, mtime=store.stat("outputs/t1/a.mp4").mtime)


def test_a_failed_write_leaves_nothing(store: storage.LocalStorage) -> None:
    with pytest.raises(RuntimeError), store.writer("outputs/t1/a.mp4") as out:
        out.write(b"partial")
        raise RuntimeError("connection lost")
    assert store.stat("outputs/t1/a.mp4") is None
    assert [p for p in store.root.rglob("*") if p.is_file()] == []


def test_a_failed_rewrite_keeps_the_old_bytes(store: storage.LocalStorage) -> None:
    with store.writer("k/a.bin") as out:
        out.write(b"old")
    with pytest.raises(RuntimeError), store.writer("k/a.bin") as out:
        out.write(b"new")
        raise RuntimeError
    assert b"".join(store.iter_chunks("k/a.bin")) == b"old"


def test_put_file_moves_or_copies(store: storage.LocalStorage, tmp_path: Path) -> None:
    src = tmp_path / "render.mp4"
    src.write_bytes(b"x" * 1000)
    assert store.put_file("a/copy.mp4", src).size == 1000
    assert src.exists()
    assert store.put_file("a/moved.mp4", src, move=True).size == 1000
    assert not src.exists()


def test_ranged_reads(store: storage.LocalStorage) -> None:
    with store.writer("r/data") as out:
        out.write(bytes(range(256)) * 4000)
    assert b"".join(store.iter_chunks("r/data", 10, 5)) == bytes(range(10, 15))
    assert len(b"".join(store.iter_chunks("r/data", 1000))) == 256 * 4000 - 1000


def test_delete_is_idempotent_and_prunes_empty_directories(store: storage.LocalStorage) -> None:
    with store.writer("outputs/t1/a.mp4") as out:
        out.write(b"1")
    assert store.delete("outputs/t1/a.mp4") is True
    assert store.delete("outputs/t1/a.mp4") is False
    assert not (store.root / "outputs").exists()


@pytest.mark.parametrize(
    "key", ["../x", "a/../../x", "/etc/passwd", "a//b", "a/./b", "", "a/b/", "a b", "a\\b"]
)
def test_keys_cannot_escape_the_root(store: storage.LocalStorage, key: str) -> None:
    with pytest.raises(storage.InvalidKey):
        store.stat(key)
    with pytest.raises(storage.InvalidKey):
        store.writer(key)
