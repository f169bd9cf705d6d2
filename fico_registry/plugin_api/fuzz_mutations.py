"""Broken inputs for the fuzz check: one thing wrong at a time, each must give a typed error (or work)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

BAD_OPTIONS: dict[str, tuple[Any, ...]] = {
    "recall_ks": (5, (1, 5), 5.0, (0,), (-1,), (2**63,), "5", None, (1.5,), (True,), ()),
    "map_ks": ((None,), None, 7, (0,), (2**70,), (2.0,), "N", ()),
    "ties": ("expected", "random", "", None),
    "map_variant": ("fico", "map", None),
    "device": ("cpu", "tpu", "cuda:7", "gpu", "", "mps"),
    "memory_budget": ("-1GB", "0.5B", "8", "10", 10, 0, -5, "abc", "1e400GB", "nanGB", "1KB", "3MiB", 2.5),
}


def _nonfinite(x: Any, data: Any, st: Any) -> Any:
    import torch

    t = x.clone() if isinstance(x, torch.Tensor) else np.array(x, dtype=np.float64 if x.dtype.kind != "f" else x.dtype)
    flat = t.reshape(-1)
    flat[data.draw(st.integers(0, flat.shape[0] - 1))] = data.draw(
        st.sampled_from((float("nan"), float("inf"), -float("inf")))
    )
    return t


def _array_mutations(x: Any, data: Any, st: Any) -> Any:
    choice = data.draw(
        st.sampled_from(
            ("nonfinite", "strings", "object", "complex", "1-d", "3-d", "empty", "no width", "ragged", "scalar", "grad")
        ),
        label="array mutation",
    )
    arr = np.asarray(x.float() if hasattr(x, "float") else x)
    if choice == "nonfinite":
        return _nonfinite(x, data, st)
    if choice == "strings":
        return arr.astype(str)
    if choice == "object":
        return arr.astype(object)
    if choice == "complex":
        return arr.astype(np.complex64)
    if choice == "1-d":
        return arr.reshape(-1)
    if choice == "3-d":
        return arr[None]
    if choice == "empty":
        return arr[:0]
    if choice == "no width":
        return arr[:, :0]
    if choice == "ragged":
        rows = arr.tolist()
        return [rows[0][:-1] if rows and isinstance(rows[0], list) else rows, *rows[1:], [1.0]]
    if choice == "scalar":
        return np.float32(1.0)
    import torch

    return torch.tensor(arr.astype(np.float32)).requires_grad_(True)  # valid: must work


def _mapping_mutations(c2i: np.ndarray, data: Any, st: Any) -> Any:
    choice = data.draw(st.sampled_from(("float", "out of range", "negative", "short", "2-d", "strings", "ragged")))
    return {
        "float": c2i.astype(np.float32),
        "out of range": c2i + 100,
        "negative": c2i - 100,
        "short": c2i[:-1],
        "2-d": c2i[None],
        "strings": c2i.astype(str),
        "ragged": [[0, 1], [0]],
    }[choice]


def _label_mutations(labels: Any, n_img: int, data: Any, st: Any) -> Any:
    choice = data.draw(st.sampled_from(("zero classes", "rows", "twos", "nan", "strings", "1-d", "grad")))
    base = np.ones((n_img, 2)) if labels is None else np.asarray(labels, dtype=np.float64)
    if choice == "grad":
        import torch

        return torch.tensor(base).requires_grad_(True)  # valid: must work
    return {
        "zero classes": np.zeros((n_img, 0)),
        "rows": base[:-1],
        "twos": base * 2,
        "nan": base * np.nan,
        "strings": base.astype(str),
        "1-d": base[:, 0],
    }[choice]


def mutate(
    data: Any, st: Any, case: dict[str, Any], *, images: Any, texts: Any, matrix: Any, measure: str, bits: int | None
) -> dict[str, Any]:
    """Keyword arguments of one evaluator call with one (or no) thing broken; "entry" names the function."""
    n_img = len(images)
    options = {
        "recall_ks": case["recall_ks"],
        "map_ks": case["map_ks"],
        "ties": case["ties"],
        "map_variant": case["map_variant"],
        "device": "cpu",
        "progress": False,
    }
    c2i, labels = case["c2i"], case["labels"]
    target = data.draw(st.sampled_from(("images", "texts", "matrix", "t2i", "c2i", "labels", "bits", *BAD_OPTIONS)))
    if target in BAD_OPTIONS:
        options[target] = data.draw(st.sampled_from(BAD_OPTIONS[target]))
    elif target == "c2i":
        c2i = _mapping_mutations(c2i, data, st)
    elif target == "labels":
        labels = _label_mutations(labels, n_img, data, st)
    elif target == "bits":
        bits = data.draw(st.sampled_from((0, -3, 1, 7, 9, 64, 10**6)))
    elif target == "images":
        images = _array_mutations(images, data, st)
    elif target == "texts":
        texts = _array_mutations(texts, data, st)
    elif target == "matrix":
        matrix = _array_mutations(matrix, data, st)
    if target in ("matrix", "t2i") or (target in BAD_OPTIONS and data.draw(st.booleans())):
        t2i = (
            _array_mutations(np.asarray(matrix).T if not hasattr(matrix, "T") else matrix.T, data, st)
            if target == "t2i"
            else None
        )
        return {"entry": "similarity", "i2t": matrix, "caption_to_image": c2i, "t2i": t2i, "labels": labels, **options}
    return {
        "entry": "embeddings",
        "images": images,
        "texts": texts,
        "caption_to_image": c2i,
        "labels": labels,
        "measure": measure,
        "bits": bits,
        **options,
    }


def corrupt_file(data: Any, st: Any, path: Path) -> None:
    """Replace a saved .npy by something that is not a usable array file."""
    choice = data.draw(st.sampled_from(("empty", "garbage", "scalar", "pickle", "truncated", "text")), label="file")
    if choice == "empty":
        path.write_bytes(b"")
    elif choice == "garbage":
        path.write_bytes(bytes(data.draw(st.lists(st.integers(0, 255), min_size=1, max_size=64))))
    elif choice == "scalar":
        np.save(path, np.float32(3.0))
    elif choice == "pickle":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif choice == "truncated":
        raw = path.read_bytes()
        path.write_bytes(raw[: max(1, len(raw) - 3)])
    else:
        path.write_text("1,2,3\n4,5,6\n")
