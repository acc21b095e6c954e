"""Checkpoint directories: atomic, verified by checksum, corrupt ones skipped."""

import json

from fraudstream.daemon.checkpoint import CheckpointStore, verify_manifest


def writer(payload: bytes, meta=None):
    def write(tmp):
        (tmp / "state.bin").write_bytes(payload)
        (tmp / "sub").mkdir()
        (tmp / "sub" / "x.json").write_text(json.dumps({"p": len(payload)}))
        return meta or {"n": len(payload)}

    return write


def test_save_then_latest_valid(tmp_path):
    store = CheckpointStore(tmp_path, keep=3)
    first = store.save(writer(b"a" * 10))
    second = store.save(writer(b"b" * 20))
    assert second.seq == first.seq + 1
    latest = store.latest_valid()
    assert latest.path == second.path and latest.meta == {"n": 20}
    assert set(verify_manifest(latest.path)["files"]) == {"state.bin", "sub/x.json"}


def test_truncated_file_falls_back_to_previous(tmp_path, caplog):
    store = CheckpointStore(tmp_path, keep=3)
    first = store.save(writer(b"a" * 10))
    second = store.save(writer(b"b" * 20))
    with open(second.path / "state.bin", "r+b") as fh:
        fh.truncate(5)
    latest = store.latest_valid()
    assert latest.path == first.path
    assert second.name in caplog.text


def test_missing_manifest_is_skipped(tmp_path):
    store = CheckpointStore(tmp_path, keep=3)
    first = store.save(writer(b"a"))
    second = store.save(writer(b"b"))
    (second.path / "manifest.json").unlink()
    assert store.latest_valid().path == first.path
    assert [i.valid for i in store.list()] == [False, True]


def test_prune_keeps_newest_and_best(tmp_path):
    store = CheckpointStore(tmp_path, keep=2)
    best = store.save(writer(b"a", {"score": 0.9}))
    for i in range(4):
        store.save(writer(b"b", {"score": 0.1 * i}))
    names = [i.seq for i in store.list()]
    assert names == [5, 4, best.seq]


def test_failed_write_leaves_no_checkpoint(tmp_path):
    store = CheckpointStore(tmp_path, keep=2)

    def broken(tmp):
        (tmp / "half").write_bytes(b"x")
        raise RuntimeError("disk full")

    try:
        store.save(broken)
    except RuntimeError:
        pass
    assert store.list() == [] and store.latest_valid() is None
    assert not list(tmp_path.iterdir())


def test_second_process_cannot_take_the_directory(tmp_path):
    import subprocess
    import sys

    store = CheckpointStore(tmp_path, keep=2)
    store.lock()
    code = (
        "import sys; from fraudstream.daemon.checkpoint import CheckpointStore, CheckpointDirBusy\n"
        f"try:\n    CheckpointStore({str(tmp_path)!r}).lock()\nexcept CheckpointDirBusy as e:\n"
        "    print(e); sys.exit(3)\n"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert other.returncode == 3 and "in use by another process" in other.stdout
    store.unlock()
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stdout + again.stderr
