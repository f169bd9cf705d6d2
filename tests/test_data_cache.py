"""The embedding cache: atomic blocks, resume after SIGKILL, consolidation, keys, dtypes, sharding."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from fico_registry.data import CacheIncompleteError, EmbeddingCache, embedding_key
from fico_registry.data.cache import bfloat16_to_float32
from fico_registry.errors import ConfigError, DataFormatError

KEY = embedding_key(model="toy", side="images", corpus_hash="abc123", config={"width": 4}, device="cpu", dtype="fp32")


def outputs(start: int, stop: int) -> dict[str, np.ndarray]:
    ids = np.arange(start, stop)
    return {"embeds": (ids[:, None] * np.float32(0.5) + np.arange(4, dtype=np.float32)), "lengths": ids % 7}


class Counter:
    def __init__(self, fn=outputs):
        self.calls: list[tuple[int, int]] = []
        self.fn = fn

    def __call__(self, start: int, stop: int):
        self.calls.append((start, stop))
        return self.fn(start, stop)


def test_encode_consolidate_reuse(tmp_path):
    cache = EmbeddingCache(tmp_path)
    count = Counter()
    result = cache.get_or_encode(KEY, 23, count, block_size=5, progress=False)
    assert count.calls == [(0, 5), (5, 10), (10, 15), (15, 20), (20, 23)]
    expected = outputs(0, 23)
    assert set(result) == {"embeds", "lengths"}
    assert isinstance(result["embeds"], np.memmap) and np.array_equal(result["embeds"], expected["embeds"])
    assert result["lengths"].dtype == np.int64 and np.array_equal(result["lengths"], expected["lengths"])
    folder = cache.path(KEY)
    assert json.loads((folder / "key.json").read_text()) == KEY
    assert not (folder / "blocks").exists() and (folder / "manifest.json").exists()
    again = Counter()
    assert np.array_equal(
        cache.get_or_encode(KEY, 23, again, block_size=5, progress=False)["embeds"], expected["embeds"]
    )
    assert again.calls == []
    status = cache.status(KEY)
    assert status.consolidated and status.missing == () and status.n_blocks == 5
    # a consolidated file damaged afterwards is noticed and encoded again
    data = (folder / "embeds.npy").read_bytes()
    (folder / "embeds.npy").write_bytes(data[:100])
    redo = Counter()
    assert np.array_equal(
        cache.get_or_encode(KEY, 23, redo, block_size=5, progress=False)["embeds"], expected["embeds"]
    )
    assert len(redo.calls) == 5


def test_single_tensor_output_and_progress_bar(tmp_path, monkeypatch):
    monkeypatch.delenv("FICO_NO_PROGRESS", raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # the bar shows on terminals only
    cache = EmbeddingCache(tmp_path)
    result = cache.get_or_encode(KEY, 7, lambda a, b: np.ones((b - a, 3), np.float16) * a, block_size=3, progress=True)
    assert isinstance(result, np.ndarray) and result.dtype == np.float16 and result.shape == (7, 3)
    assert result[6, 0] == 6


def test_different_key_never_returns_stale_data(tmp_path):
    cache = EmbeddingCache(tmp_path)
    cache.get_or_encode(KEY, 4, outputs, block_size=2, progress=False)
    other = {**KEY, "checkpoint_sha256": "f" * 64}
    count = Counter(
        lambda a, b: {"embeds": np.full((b - a, 4), -1.0, np.float32), "lengths": np.zeros(b - a, np.int64)}
    )
    result = cache.get_or_encode(other, 4, count, block_size=2, progress=False)
    assert len(count.calls) == 2 and (result["embeds"] == -1).all()
    assert cache.path(other) != cache.path(KEY)
    # a folder whose stored key differs (edited by hand / collision) is refused
    (cache.path(other) / "key.json").write_text(json.dumps(KEY))
    with pytest.raises(DataFormatError, match="another key"):
        cache.load(other)
    # the same key with another item count is a key that misses the corpus identity
    with pytest.raises(DataFormatError, match="4 items, this run 5"):
        cache.encode(KEY, 5, outputs, block_size=2, progress=False)


def test_keys_must_be_plain_json(tmp_path):
    cache = EmbeddingCache(tmp_path)
    with pytest.raises(ConfigError, match="plain JSON"):
        cache.path({"model": "x", "config": {"path": Path("/x")}})
    with pytest.raises(ConfigError):
        embedding_key(model="x", side="both", corpus_hash="h")
    assert cache.path({"b": 1, "a": 2}) == cache.path({"a": 2, "b": 1})


def test_partial_and_corrupt_files_are_ignored(tmp_path):
    cache = EmbeddingCache(tmp_path)
    first = Counter()
    cache.encode(KEY, 20, first, block_size=4, blocks=[0, 1, 2], progress=False)
    blocks = cache.path(KEY) / "blocks"
    # a temp file left by a killed writer, a block without its record, a record whose array is cut short
    (blocks / "00000003.embeds.npy.tmp-999-deadbeef").write_bytes(b"\x93NUMPY garbage")
    np.save(blocks / "00000004.embeds.npy", np.zeros((4, 4), np.float32))
    data = (blocks / "00000002.embeds.npy").read_bytes()
    (blocks / "00000002.embeds.npy").write_bytes(data[: len(data) // 2])
    assert cache.status(KEY).done == (0, 1)
    with pytest.raises(CacheIncompleteError, match="3 of 5 blocks"):
        cache.consolidate(KEY)
    second = Counter()
    result = cache.get_or_encode(KEY, 20, second, block_size=4, progress=False)
    assert second.calls == [(8, 12), (12, 16), (16, 20)]
    assert np.array_equal(result["embeds"], outputs(0, 20)["embeds"])
    assert not list(cache.path(KEY).rglob("*.tmp-*"))


def test_existing_block_size_wins(tmp_path):
    cache = EmbeddingCache(tmp_path)
    cache.encode(KEY, 10, outputs, block_size=5, blocks=[0], progress=False)
    count = Counter()
    result = cache.get_or_encode(KEY, 10, count, block_size=3, progress=False)
    assert count.calls == [(5, 10)] and np.array_equal(result["lengths"], outputs(0, 10)["lengths"])


def test_inconsistent_blocks_are_reported(tmp_path):
    cache = EmbeddingCache(tmp_path)
    with pytest.raises(ConfigError, match="expected 2 rows"):
        cache.encode(KEY, 4, lambda a, b: np.zeros((1, 2)), block_size=2, progress=False)
    cache.encode(KEY, 4, lambda a, b: np.zeros((b - a, 2), np.float32), block_size=2, blocks=[0], progress=False)
    cache.encode(KEY, 4, lambda a, b: np.zeros((b - a, 3), np.float32), block_size=2, blocks=[1], progress=False)
    with pytest.raises(DataFormatError, match="trailing shapes"):
        cache.consolidate(KEY)
    with pytest.raises(ConfigError, match="cannot be cached"):
        cache.encode({"k": 2}, 2, lambda a, b: np.zeros(b - a, np.complex64), block_size=2, progress=False)


def test_sharded_ranks_and_waiting_consolidation(tmp_path):
    cache = EmbeddingCache(tmp_path)
    done_by_rank = {}
    for rank in (0, 2):
        done_by_rank[rank] = cache.encode(KEY, 25, outputs, block_size=4, rank=rank, world_size=3, progress=False)
    assert done_by_rank == {0: [0, 3, 6], 2: [2, 5]}
    assert cache.status(KEY).missing == (1, 4)
    with pytest.raises(CacheIncompleteError):
        cache.consolidate(KEY, wait=True, timeout=0.2, poll_seconds=0.05)

    def late_rank() -> None:
        time.sleep(0.3)
        cache.encode(KEY, 25, outputs, block_size=4, rank=1, world_size=3, progress=False)

    worker = threading.Thread(target=late_rank)
    worker.start()
    result = cache.consolidate(KEY, wait=True, timeout=30, poll_seconds=0.05)
    worker.join()
    assert np.array_equal(result["embeds"], outputs(0, 25)["embeds"])
    with pytest.raises(ConfigError, match="rank"):
        cache.encode({"k": 1}, 4, outputs, block_size=2, rank=3, world_size=2)


def test_torch_dtypes_round_trip_including_bfloat16(tmp_path):
    torch = pytest.importorskip("torch")
    cache = EmbeddingCache(tmp_path)
    source = {
        "f32": torch.randn(9, 3),
        "f16": torch.randn(9, 3).half(),
        "bf16": torch.randn(9, 2, 3).bfloat16(),
        "i8": torch.randint(-128, 127, (9, 8), dtype=torch.int8),
        "u8": torch.randint(0, 255, (9, 8), dtype=torch.uint8),
        "i64": torch.arange(9),
        "mask": torch.arange(9) % 2 == 0,
    }

    def encode(a: int, b: int):
        return {k: v[a:b] for k, v in source.items()}

    as_numpy = cache.get_or_encode(KEY, 9, encode, block_size=4, progress=False)
    assert as_numpy["bf16"].dtype == np.uint16 and as_numpy["mask"].dtype == bool
    assert np.array_equal(bfloat16_to_float32(as_numpy["bf16"]), source["bf16"].float().numpy())
    tensors = cache.load(KEY, as_torch=True)
    for name, tensor in source.items():
        assert tensors[name].dtype == tensor.dtype, name
        assert torch.equal(tensors[name], tensor), name


CHILD = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np
    from fico_registry.data import EmbeddingCache

    root, log, gate = sys.argv[1:4]
    key = {"model": "toy", "side": "texts", "corpus_hash": "kill-test"}

    def encode(start, stop):
        with open(log, "a") as handle:
            handle.write(f"{start}\\n")
        if start >= 30:  # block 3: hold here until killed (the gate file never appears)
            while not os.path.exists(gate):
                time.sleep(0.01)
        ids = np.arange(start, stop)
        return {"embeds": np.sin(ids[:, None] * np.arange(1, 5)).astype(np.float32), "ids": ids}

    EmbeddingCache(root).get_or_encode(key, 95, encode, block_size=10, progress=False)
    """
)


def _expected(start: int, stop: int) -> dict[str, np.ndarray]:
    ids = np.arange(start, stop)
    return {"embeds": np.sin(ids[:, None] * np.arange(1, 5)).astype(np.float32), "ids": ids}


def test_killed_run_resumes_without_recomputing(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    log, root = tmp_path / "calls.log", tmp_path / "cache"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, str(script), str(root), str(log), str(tmp_path / "gate")], env=env)
    key = {"model": "toy", "side": "texts", "corpus_hash": "kill-test"}
    cache = EmbeddingCache(root)
    record = cache.path(key) / "blocks" / "00000002.json"
    deadline = time.monotonic() + 120
    # synchronise on files: block 2's record is on disk and the child has entered block 3
    while not (record.exists() and log.exists() and "30" in log.read_text().split()):
        assert child.poll() is None, "the child ended before it was killed"
        assert time.monotonic() < deadline, "the child did not reach block 3"
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL
    assert log.read_text().split() == ["0", "10", "20", "30"]
    assert not (cache.path(key) / "manifest.json").exists()
    assert cache.status(key).done == (0, 1, 2)

    resumed = Counter(_expected)
    result = cache.get_or_encode(key, 95, resumed, block_size=10, progress=False)
    assert [start for start, _stop in resumed.calls] == [30, 40, 50, 60, 70, 80, 90]

    fresh = EmbeddingCache(tmp_path / "uninterrupted").get_or_encode(key, 95, _expected, block_size=10, progress=False)
    for name in ("embeds", "ids"):
        assert np.array_equal(result[name], fresh[name]), name
        assert result[name].dtype == fresh[name].dtype
