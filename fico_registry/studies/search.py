"""The FAISS search study: how exhaustive and approximate indexes trade recall for time and bytes.

One collection of image and text vectors (synthetic, or a user's embeddings), searched in one
direction (t2i: captions query the images; i2t: images query the captions) by:

    flat-ip          faiss.IndexFlatIP on the float vectors: exhaustive, the reference
    hnsw-flat        faiss.IndexHNSWFlat (inner product) on the float vectors, efSearch swept
    fico-engine-ip   this package's engine (EmbeddingScores blocks + torch.topk): exhaustive
    binary-flat      faiss.IndexBinaryFlat on `bits`-bit codes of the same vectors: exhaustive Hamming
    binary-ivf       faiss.IndexBinaryIVF on those codes, nprobe swept
    fico-engine-hamming  this package's exact Hamming top-k (fico_registry.evaluator.hamming.hamming_topk): exhaustive

Codes are sign(PCA projection) by default: the vectors minus the database mean, projected on the
database's top-`bits` principal directions, one bit per sign (no ITQ rotation). method="random"
uses the signs of a Gaussian random projection of the raw vectors instead (SimHash / LSH).

Recall@k of an index = |its top-k ∩ flat-ip's top-k| / k, averaged over queries, where each is
the result of a search asked for k results. So flat-ip has recall 1 by definition and binary
indexes are judged against exhaustive float search. Binary indexes also get `hamming_recall`:
against exact Hamming search, tie-aware (a returned item counts when its true distance is within
the exact k-th distance), which is 1 for every exhaustive Hamming search.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from fico_registry.errors import OptionError, ShapeError

DEFAULT_KS = (1, 100, 1000)
EF_SEARCH = (16, 32, 64, 128, 256, 512)
NPROBE = (1, 2, 4, 8, 16, 32, 64)
TARGET_SHARE = 0.95  # an approximate index must keep this share of its exhaustive counterpart's R@1
_CHUNK = 1 << 15


def _faiss():
    try:
        import faiss
    except ImportError:  # pragma: no cover - faiss is a declared extra
        raise OptionError("the search study needs faiss: pip install 'fico-registry[search]' (faiss-cpu)") from None
    return faiss


# -- data -----------------------------------------------------------------------------------------
def synthetic_vectors(
    n_images: int,
    n_texts: int,
    dim: int,
    *,
    seed: int = 0,
    image_rows: np.ndarray | None = None,
    text_rows: np.ndarray | None = None,
    intrinsic: int = 16,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clustered unit vectors with paired captions, in the spirit of faiss's SyntheticDataset.

    Images are points of `intrinsic`-dimensional Gaussian clusters (one per 100 images, at least
    8), carried into `dim` dimensions by a fixed non-linear map (sin of a random linear map, as
    faiss does) plus noise. Caption j belongs to image caption_to_image[j] (captions split evenly
    over images, in order) and lies near it: its latent point is the image's plus small noise.
    Only `image_rows` / `text_rows` are materialised (all by default), so a large collection can be
    queried with a sample of captions without building them all. Returns (images, texts,
    caption_to_image) with caption_to_image for every caption.
    """
    if n_images < 1 or n_texts < 1 or dim < 1:
        raise OptionError("synthetic vectors need at least one image, one caption and one dimension")
    rng = np.random.default_rng(seed)
    mixing = rng.random((intrinsic, dim), dtype=np.float32)
    frequency = (rng.random(dim, dtype=np.float32) * 4 + 0.1).astype(np.float32)
    n_clusters = max(8, n_images // 100)
    centres = rng.standard_normal((n_clusters, intrinsic), dtype=np.float32)
    latent_images = centres[rng.integers(0, n_clusters, n_images)] + 0.5 * rng.standard_normal(
        (n_images, intrinsic), dtype=np.float32
    )
    caption_to_image = (np.arange(n_texts, dtype=np.int64) * n_images) // n_texts
    latent_texts = latent_images[caption_to_image] + 0.25 * rng.standard_normal((n_texts, intrinsic), dtype=np.float32)

    def embed(latent: np.ndarray, stream: int) -> np.ndarray:
        noise = np.random.default_rng([seed, stream])
        out = np.empty((len(latent), dim), dtype=np.float32)
        for start in range(0, len(latent), _CHUNK):
            block = np.sin((latent[start : start + _CHUNK] @ mixing) * frequency)
            block += 0.3 * noise.standard_normal(block.shape, dtype=np.float32)
            block /= np.linalg.norm(block, axis=1, keepdims=True)
            out[start : start + len(block)] = block
        return out

    images = embed(latent_images if image_rows is None else latent_images[image_rows], 1)
    texts = embed(latent_texts if text_rows is None else latent_texts[text_rows], 2)
    return images, texts, caption_to_image


def load_embeddings(path: str) -> np.ndarray:
    """A user's (n, d) float embedding file (.npy), as float32 unit rows (inner product = cosine)."""
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    if array.ndim != 2 or array.dtype.kind != "f":
        raise ShapeError(f"{path}: embeddings must be a 2-d float array (n, d); got {array.shape} {array.dtype}")
    out = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(out).all():
        raise ShapeError(f"{path}: embeddings hold NaN or infinite values")
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ShapeError(f"{path}: {int((norms == 0).sum())} all-zero rows have no direction")
    return out / norms


# -- binarisation ---------------------------------------------------------------------------------
@dataclass
class Binariser:
    """x -> packed sign bits of (x - mean) @ projection."""

    method: str
    mean: np.ndarray  # (d,)
    projection: np.ndarray  # (d, bits)

    @property
    def bits(self) -> int:
        return self.projection.shape[1]

    @classmethod
    def fit(
        cls, database: np.ndarray, bits: int, method: str = "pca", seed: int = 0, sample: int = 50_000
    ) -> Binariser:
        if bits < 8 or bits % 8:
            raise OptionError(f"bits must be a positive multiple of 8 (faiss binary indexes), got {bits}")
        d = database.shape[1]
        if method == "random":
            rng = np.random.default_rng([seed, 7])
            return cls("random", np.zeros(d, dtype=np.float32), rng.standard_normal((d, bits), dtype=np.float32))
        if method != "pca":
            raise OptionError(f"binarisation method must be 'pca' or 'random', got {method!r}")
        if bits > d:
            raise OptionError(f"PCA binarisation cannot give {bits} bits from {d}-d vectors; use method='random'")
        rows = database
        if len(database) > sample:
            rows = database[np.sort(np.random.default_rng([seed, 8]).choice(len(database), sample, replace=False))]
        mean = rows.mean(axis=0, dtype=np.float64)
        centred = (rows - mean).astype(np.float64)
        covariance = centred.T @ centred / max(1, len(rows) - 1)
        values, vectors = np.linalg.eigh(covariance)  # ascending eigenvalues
        top = vectors[:, np.argsort(values)[::-1][:bits]]
        return cls("pca", mean.astype(np.float32), np.ascontiguousarray(top, dtype=np.float32))

    def codes(self, x: np.ndarray) -> np.ndarray:
        """(n, bits / 8) uint8: bit = 1 where the projection is > 0 (np.packbits order)."""
        out = np.empty((len(x), self.bits // 8), dtype=np.uint8)
        for start in range(0, len(x), _CHUNK):
            projected = (x[start : start + _CHUNK] - self.mean) @ self.projection
            out[start : start + len(projected)] = np.packbits(projected > 0, axis=1)
        return out

    def describe(self) -> dict[str, Any]:
        if self.method == "pca":
            text = (
                f"sign of the projection on the top {self.bits} principal directions of the database "
                "(mean-centred; no ITQ rotation)"
            )
        else:
            text = f"sign of a Gaussian random projection to {self.bits} dimensions (SimHash; no centring)"
        return {"method": self.method, "bits": self.bits, "description": text}


def hamming_distances(queries: np.ndarray, database: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Exact Hamming distance of each query to each of its `ids` (n_q, k); -1 ids give -1."""
    q = queries.view(np.uint8)
    safe = np.where(ids < 0, 0, ids)
    xor = np.bitwise_xor(q[:, None, :], database[safe])
    dist = np.bitwise_count(xor).sum(axis=-1, dtype=np.int64)
    return np.where(ids < 0, -1, dist)


# -- recall -------------------------------------------------------------------------------------
def overlap_recall(found: np.ndarray, reference: np.ndarray, k: int) -> float:
    """Mean over queries of |found[:, :k] ∩ reference[:, :k]| / k (ids unique per row; -1 = none)."""
    total = 0
    for start in range(0, len(found), 4096):
        a = found[start : start + 4096, :k]
        b = reference[start : start + 4096, :k]
        both = np.sort(np.concatenate([a, b], axis=1), axis=1)
        total += int(((both[:, 1:] == both[:, :-1]) & (both[:, 1:] >= 0)).sum())
    return total / (len(found) * k)


def hamming_recall(distances: np.ndarray, exact_kth: np.ndarray, k: int) -> float:
    """Tie-aware recall against exact Hamming search: returned items within the exact k-th distance."""
    within = (distances[:, :k] >= 0) & (distances[:, :k] <= exact_kth[:, None])
    return float(np.minimum(within.sum(axis=1), k).mean() / k)


def task_recall(ids: np.ndarray, query_rows: np.ndarray, caption_to_image: np.ndarray, direction: str, k: int) -> float:
    """Share of queries whose own match is in the top-k (t2i: the caption's image; i2t: any of the image's captions)."""
    top = ids[:, :k]
    if direction == "t2i":
        hit = (top == caption_to_image[query_rows][:, None]).any(axis=1)
    else:
        hit = ((caption_to_image[np.where(top < 0, 0, top)] == query_rows[:, None]) & (top >= 0)).any(axis=1)
    return float(hit.mean())


# -- indexes --------------------------------------------------------------------------------------
def _flat_bytes(index: Any) -> int:
    return int(index.ntotal * index.code_size)


def _hnsw_bytes(index: Any) -> int:
    faiss = _faiss()
    storage = faiss.downcast_index(index.storage)
    graph = index.hnsw
    return int(
        index.ntotal * storage.code_size
        + graph.neighbors.size() * 4
        + graph.offsets.size() * 8
        + graph.levels.size() * 4
    )


def _ivf_bytes(index: Any) -> int:
    # codes and 64-bit ids in the inverted lists, plus the coarse quantizer's centroids
    return int(index.ntotal * (index.code_size + 8) + index.nlist * index.code_size)


def _rounded(times: dict[int, float]) -> dict[str, float]:
    return {str(k): round(t, 6) for k, t in times.items()}


def _timed_search(search: Any, queries: np.ndarray, k: int) -> tuple[float, np.ndarray, np.ndarray]:
    began = time.perf_counter()
    distances, ids = search(queries, k)
    return time.perf_counter() - began, distances, ids


def engine_search(
    database: Any, queries: Any, k: int, measure: str, bits: int = 0, block_bytes: int = 256 << 20
) -> tuple[np.ndarray, np.ndarray]:
    """Exhaustive top-k with this package's engine: (scores (n_q, k), ids (n_q, k)).

    measure "inner_product" on float rows, or "hamming" on packed codes (scores = -distance).
    """
    import torch

    from fico_registry.evaluator.budget import rows_per_block
    from fico_registry.evaluator.sources import EmbeddingScores

    if (
        measure == "hamming"
    ):  # distance-count threshold kernel (fico_registry.evaluator.hamming): as fast as faiss or faster
        from fico_registry.evaluator.hamming import hamming_topk

        distances, ids = hamming_topk(queries, database, min(k, len(database)))
        return (-distances).astype(np.int32), ids
    db = torch.from_numpy(np.ascontiguousarray(database))
    q = torch.from_numpy(np.ascontiguousarray(queries))
    source = EmbeddingScores(db, q, measure, "text", bits)  # queries are the "texts" side here
    rows = rows_per_block(source.n_candidates, source.cell_bytes(), block_bytes, full_sort=False)
    kk = min(k, source.n_candidates)
    scores = np.empty((source.n_queries, kk), dtype=np.float32 if measure != "hamming" else np.int32)
    ids = np.empty((source.n_queries, kk), dtype=np.int64)
    with torch.inference_mode():
        for start in range(0, source.n_queries, rows):
            stop = min(source.n_queries, start + rows)
            values, index = source.block(start, stop).topk(kk, dim=1)
            scores[start:stop] = values.numpy()
            ids[start:stop] = index.numpy()
    return scores, ids


@dataclass
class StudySettings:
    ks: tuple[int, ...] = DEFAULT_KS
    bits: int = 64
    binarise: str = "pca"
    direction: str = "t2i"
    max_queries: int | None = 10_000
    hnsw_m: int = 32
    ef_construction: int = 40
    ef_search: tuple[int, ...] = EF_SEARCH
    nlist: int | None = None  # binary IVF lists; default sqrt(n_database)
    nprobe: tuple[int, ...] = NPROBE
    target: float = TARGET_SHARE
    seed: int = 0


class SearchStudy:
    """Every index on one database / query set; results as the JSON the CLI writes."""

    def __init__(
        self,
        database: np.ndarray,
        queries: np.ndarray,
        settings: StudySettings,
        *,
        query_rows: np.ndarray,
        caption_to_image: np.ndarray | None,
    ) -> None:
        if database.shape[1] != queries.shape[1]:
            raise ShapeError(f"database is {database.shape[1]}-d but queries are {queries.shape[1]}-d")
        self.database, self.queries, self.s = database, queries, settings
        self.query_rows, self.caption_to_image = query_rows, caption_to_image
        self.ks = tuple(k for k in settings.ks if k <= len(database))
        if not self.ks:
            raise OptionError(f"every k in {settings.ks} exceeds the database size {len(database)}")
        self.reference: dict[int, np.ndarray] = {}  # flat-ip ids per k

    def _score(self, ids: dict[int, np.ndarray]) -> dict[str, Any]:
        out: dict[str, Any] = {"recall": {str(k): overlap_recall(ids[k], self.reference[k], k) for k in self.ks}}
        if self.caption_to_image is not None:
            out["task_recall"] = {
                str(k): task_recall(ids[k], self.query_rows, self.caption_to_image, self.s.direction, k)
                for k in self.ks
            }
        return out

    def _run_searches(
        self, search: Any, queries: np.ndarray
    ) -> tuple[dict[int, float], dict[int, np.ndarray], dict[int, np.ndarray]]:
        times, dists, ids = {}, {}, {}
        for k in self.ks:
            times[k], dists[k], ids[k] = _timed_search(search, queries, k)
        return times, dists, ids

    def _entry(
        self,
        kind: str,
        vectors: str,
        params: dict[str, Any],
        build_s: float,
        times: dict[int, float],
        ids: dict[int, np.ndarray],
        n_bytes: int,
    ) -> dict[str, Any]:
        return {
            "type": kind,
            "vectors": vectors,
            "params": params,
            "build_s": round(build_s, 6),
            "search_s": round(times[max(self.ks)], 6),
            "search_s_by_k": {str(k): round(t, 6) for k, t in times.items()},
            **self._score(ids),
            "bytes": int(n_bytes),
        }

    def run(self) -> dict[str, Any]:
        """Build and search every index in turn (one in memory at a time); the flat index is the reference."""
        faiss = _faiss()
        s, db, q = self.s, self.database, self.queries
        indexes: dict[str, Any] = {"flat-ip": self._flat_ip(faiss)}
        indexes["hnsw-flat"] = self._hnsw(faiss)
        indexes["fico-engine-ip"] = self._engine_ip()

        # binary codes of the same vectors
        began = time.perf_counter()
        binariser = Binariser.fit(db, s.bits, s.binarise, s.seed)
        db_codes, q_codes = binariser.codes(db), binariser.codes(q)
        binarise_s = time.perf_counter() - began
        engine_hamming, exact_kth = self._engine_hamming(db_codes, q_codes)
        indexes["binary-flat"] = self._binary_flat(faiss, db_codes, q_codes, exact_kth)
        indexes["binary-ivf"] = self._binary_ivf(faiss, db_codes, q_codes, exact_kth, indexes["binary-flat"])
        indexes["fico-engine-hamming"] = engine_hamming
        return {
            "n_database": len(db),
            "n_queries": len(q),
            "dim": db.shape[1],
            "bits": s.bits,
            "direction": s.direction,
            "ks": list(self.ks),
            "binarisation": {**binariser.describe(), "seconds": round(binarise_s, 6)},
            "indexes": indexes,
        }

    def _flat_ip(self, faiss: Any) -> dict[str, Any]:
        began = time.perf_counter()
        flat = faiss.IndexFlatIP(self.database.shape[1])
        flat.add(self.database)
        build = time.perf_counter() - began
        times, _, ids = self._run_searches(flat.search, self.queries)
        self.reference = ids
        return self._entry("faiss.IndexFlatIP", "float32", {}, build, times, ids, _flat_bytes(flat))

    def _hnsw(self, faiss: Any) -> dict[str, Any]:
        s = self.s
        began = time.perf_counter()
        hnsw = faiss.IndexHNSWFlat(self.database.shape[1], s.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = s.ef_construction
        hnsw.add(self.database)
        build = time.perf_counter() - began
        sweep = []
        for ef in s.ef_search:
            hnsw.hnsw.efSearch = ef
            times, _, ids = self._run_searches(hnsw.search, self.queries)
            scored = self._score(ids)
            sweep.append({"efSearch": ef, "search_s": _rounded(times), **scored, "_t": times, "_ids": ids})
        params = {"M": s.hnsw_m, "efConstruction": s.ef_construction}
        return self._pick(
            "faiss.IndexHNSWFlat", "float32", params, "efSearch", build, sweep, _hnsw_bytes(hnsw),
            baseline_r1=1.0, baseline="flat-ip",
        )  # fmt: skip

    def _engine_ip(self) -> dict[str, Any]:
        times, ids = {}, {}
        for k in self.ks:
            t0 = time.perf_counter()
            _, ids[k] = engine_search(self.database, self.queries, k, "inner_product")
            times[k] = time.perf_counter() - t0
        return self._entry("fico_registry engine (exact)", "float32", {}, 0.0, times, ids, self.database.nbytes)

    def _hamming_recall(self, q_codes: np.ndarray, db_codes: np.ndarray, ids: dict[int, np.ndarray],
                        exact_kth: dict[int, np.ndarray]) -> dict[str, float]:  # fmt: skip
        return {str(k): hamming_recall(hamming_distances(q_codes, db_codes, ids[k]), exact_kth[k], k) for k in self.ks}

    def _engine_hamming(
        self, db_codes: np.ndarray, q_codes: np.ndarray
    ) -> tuple[dict[str, Any], dict[int, np.ndarray]]:
        """The exact engine on codes; its k-th distances are what approximate indexes are scored against."""
        exact_kth: dict[int, np.ndarray] = {}
        times, ids = {}, {}
        for k in self.ks:
            t0 = time.perf_counter()
            scores, ids[k] = engine_search(db_codes, q_codes, k, "hamming", self.s.bits)
            times[k] = time.perf_counter() - t0
            exact_kth[k] = -scores[:, k - 1].astype(np.int64)
        vectors = f"{self.s.bits}-bit codes"
        entry = self._entry("fico_registry engine (exact Hamming)", vectors, {}, 0.0, times, ids, db_codes.nbytes)
        entry["hamming_recall"] = self._hamming_recall(q_codes, db_codes, ids, exact_kth)
        return entry, exact_kth

    def _binary_flat(self, faiss: Any, db_codes: np.ndarray, q_codes: np.ndarray,
                     exact_kth: dict[int, np.ndarray]) -> dict[str, Any]:  # fmt: skip
        began = time.perf_counter()
        binary_flat = faiss.IndexBinaryFlat(self.s.bits)
        binary_flat.add(db_codes)
        build = time.perf_counter() - began
        times, dists, ids = self._run_searches(binary_flat.search, q_codes)
        vectors = f"{self.s.bits}-bit codes"
        entry = self._entry("faiss.IndexBinaryFlat", vectors, {}, build, times, ids, _flat_bytes(binary_flat))
        entry["hamming_recall"] = self._hamming_recall(q_codes, db_codes, ids, exact_kth)
        entry["distances_match_bruteforce"] = all(
            np.array_equal(dists[k].astype(np.int64), hamming_distances(q_codes, db_codes, ids[k])) for k in self.ks
        )
        return entry

    def _binary_ivf(self, faiss: Any, db_codes: np.ndarray, q_codes: np.ndarray, exact_kth: dict[int, np.ndarray],
                    binary_flat: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
        s = self.s
        # sqrt(n) lists, but no more than faiss's 39 training points per centroid allow
        nlist = s.nlist or max(1, min(round(math.sqrt(len(db_codes))), len(db_codes) // 39))
        began = time.perf_counter()
        quantizer = faiss.IndexBinaryFlat(s.bits)
        ivf = faiss.IndexBinaryIVF(quantizer, s.bits, nlist)
        ivf.train(db_codes)
        ivf.add(db_codes)
        build = time.perf_counter() - began
        sweep = []
        for nprobe in sorted({min(p, nlist) for p in s.nprobe}):
            ivf.nprobe = nprobe
            times, _, ids = self._run_searches(ivf.search, q_codes)
            point = {"nprobe": nprobe, "search_s": _rounded(times), **self._score(ids), "_t": times, "_ids": ids}
            point["hamming_recall"] = self._hamming_recall(q_codes, db_codes, ids, exact_kth)
            sweep.append(point)
        return self._pick(
            "faiss.IndexBinaryIVF", f"{s.bits}-bit codes", {"nlist": nlist}, "nprobe", build, sweep, _ivf_bytes(ivf),
            baseline_r1=binary_flat["recall"][str(self.ks[0])], baseline="binary-flat",
        )  # fmt: skip

    def _pick(
        self,
        kind: str,
        vectors: str,
        params: dict[str, Any],
        param: str,
        build: float,
        sweep: list[dict[str, Any]],
        n_bytes: int,
        *,
        baseline_r1: float,
        baseline: str,
    ) -> dict[str, Any]:
        """The cheapest swept setting that keeps TARGET_SHARE of the baseline's R@(smallest k)."""
        k0 = str(self.ks[0])
        need = self.s.target * baseline_r1
        chosen = next((p for p in sweep if p["recall"][k0] >= need), None)
        met = chosen is not None
        if chosen is None:
            chosen = max(sweep, key=lambda p: p["recall"][k0])
        entry = self._entry(
            kind, vectors, {**params, param: chosen[param]}, build, chosen["_t"], chosen["_ids"], n_bytes
        )
        if "hamming_recall" in chosen:
            entry["hamming_recall"] = chosen["hamming_recall"]
        entry["sweep_param"] = param
        entry["sweep"] = [{k: v for k, v in p.items() if not k.startswith("_")} for p in sweep]
        for point in entry["sweep"]:  # the plot reads search time at the largest k
            point["search_s_by_k"] = point.pop("search_s")
            point["search_s"] = point["search_s_by_k"][str(max(self.ks))]
        entry["target"] = {
            "rule": f"smallest {param} with R@{k0} >= {self.s.target:g} x {baseline}'s R@{k0}",
            "baseline_recall": baseline_r1,
            "required": need,
            "met": met,
        }
        return entry


def run_search_study(
    images: np.ndarray,
    texts: np.ndarray,
    settings: StudySettings,
    *,
    caption_to_image: np.ndarray | None = None,
    query_rows: np.ndarray | None = None,
) -> dict[str, Any]:
    """Search `texts` against `images` (t2i) or the reverse (i2t) with every index.

    `query_rows[i]` is the row of query i among all queries of that side (for task recall when
    only a sample of queries is given); default 0..n-1.
    """
    database, queries = (images, texts) if settings.direction == "t2i" else (texts, images)
    if settings.direction not in ("t2i", "i2t"):
        raise OptionError(f"direction must be 't2i' or 'i2t', got {settings.direction!r}")
    rows = np.arange(len(queries)) if query_rows is None else np.asarray(query_rows)
    study = SearchStudy(
        np.ascontiguousarray(database, dtype=np.float32),
        np.ascontiguousarray(queries, dtype=np.float32),
        settings,
        query_rows=rows,
        caption_to_image=caption_to_image,
    )
    return study.run()


def query_sample(n_queries: int, max_queries: int | None, seed: int = 0) -> np.ndarray:
    """Rows of the queries to run: all, or a sorted uniform sample of max_queries."""
    if max_queries is None or max_queries <= 0 or n_queries <= max_queries:
        return np.arange(n_queries)
    return np.sort(np.random.default_rng([seed, 3]).choice(n_queries, max_queries, replace=False))


def synthetic_study(n_images: int, n_texts: int, dim: int, settings: StudySettings) -> dict[str, Any]:
    """The study on synthetic vectors: only the sampled queries are generated."""
    began = time.perf_counter()
    n_queries = n_texts if settings.direction == "t2i" else n_images
    rows = query_sample(n_queries, settings.max_queries, settings.seed)
    if settings.direction == "t2i":
        images, texts, c2i = synthetic_vectors(n_images, n_texts, dim, seed=settings.seed, text_rows=rows)
    else:
        images, texts, c2i = synthetic_vectors(n_images, n_texts, dim, seed=settings.seed, image_rows=rows)
    generate_s = time.perf_counter() - began
    result = run_search_study(images, texts, settings, caption_to_image=c2i, query_rows=rows)
    result["data"] = {
        "kind": "synthetic",
        "n_images": n_images,
        "n_texts": n_texts,
        "n_queries_total": n_queries,
        "seed": settings.seed,
        "generate_s": round(generate_s, 3),
        "description": "clustered unit vectors (faiss SyntheticDataset-like), captions near their image",
    }
    return result
