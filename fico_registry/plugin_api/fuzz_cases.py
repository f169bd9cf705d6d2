"""The hypothesis properties behind fico_registry.plugin_api.fuzzing.check_evaluator_inputs (imported lazily)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from fico_registry.evaluator import reference as bruteforce
from fico_registry.plugin_api.fuzzing import (
    _EXPONENTS,
    Skip,
    compare,
    exact_power_of_two,
    expected_metrics,
    report_dict,
    typed_or_result,
)

MEASURES = ("cosine", "inner_product", "euclidean", "maxsim", "hamming")


def draw_case(data: Any, st: Any) -> dict[str, Any]:
    """Sizes, caption map, labels and options of one small evaluation."""
    n_img = data.draw(st.integers(1, 4), label="n_images")
    n_txt = data.draw(st.integers(n_img, 6), label="n_texts")
    extra = data.draw(st.lists(st.integers(0, n_img - 1), min_size=n_txt - n_img, max_size=n_txt - n_img))
    order = data.draw(st.permutations(range(n_txt)))
    base = list(range(n_img)) + extra
    labels = None
    if data.draw(st.booleans(), label="labelled"):
        n_classes = data.draw(st.integers(1, 3))
        labels = np.array(
            data.draw(
                st.lists(
                    st.lists(st.integers(0, 1), min_size=n_classes, max_size=n_classes), min_size=n_img, max_size=n_img
                )
            ),
            dtype=np.int64,
        )
    small_k = st.integers(1, 7)
    return {
        "c2i": np.array([base[p] for p in order], dtype=np.int64),
        "labels": labels,
        "ties": data.draw(st.sampled_from(("expected", "optimistic", "pessimistic"))),
        "map_variant": data.draw(st.sampled_from(("fico", "apk", "dcmh"))),
        "recall_ks": data.draw(st.one_of(small_k, st.lists(small_k, min_size=1, max_size=3, unique=True))),
        "map_ks": data.draw(st.lists(st.one_of(st.none(), small_k), min_size=1, max_size=3, unique=True)),
        "memory_budget": data.draw(st.sampled_from((None, None, "1MB", 2000, 300))),
    }


def n_images(case: dict[str, Any]) -> int:
    """The number of images of a drawn case: its label rows, else one past the highest caption target."""
    return case["labels"].shape[0] if case["labels"] is not None else int(case["c2i"].max()) + 1


def _options(case: dict[str, Any]) -> dict[str, Any]:
    ks = case["recall_ks"]
    return {
        "recall_ks": ks,
        "map_ks": case["map_ks"],
        "ties": case["ties"],
        "map_variant": case["map_variant"],
        "memory_budget": case["memory_budget"],
        "device": "cpu",
        "progress": False,
    }


def _brute_case(case: dict[str, Any]) -> dict[str, Any]:
    ks = case["recall_ks"]
    return {**case, "recall_ks": (ks,) if isinstance(ks, int) else tuple(ks)}


def draw_scores(data: Any, st: Any, shape: tuple[int, int]) -> Any:
    """A score matrix with many ties: small ints, extreme ints of the dtype, or ints x 2**k floats."""
    dtype = data.draw(
        st.sampled_from(
            (
                *("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"),
                "float16",
                "float32",
                "float64",
                "bfloat16",
            )
        ),
        label="dtype",
    )
    small = np.array(data.draw(st.lists(st.integers(0, 3), min_size=shape[0] * shape[1], max_size=shape[0] * shape[1])))
    small = small.reshape(shape)
    if dtype in _EXPONENTS:
        low, high = _EXPONENTS[dtype]
        exponent = data.draw(st.integers(low, high), label="exponent")
        return exact_power_of_two(small - 1, exponent, dtype)
    info = np.iinfo(dtype)
    where = data.draw(st.sampled_from(("low", "middle", "high")), label="range")
    if where == "low":
        return (np.array(info.min, dtype=object) + small).astype(dtype)
    if where == "high":
        return (np.array(info.max, dtype=object) - small).astype(dtype)
    return (small + (0 if info.min == 0 else -1)).astype(dtype)


def similarity_check(hypothesis: Any, tmp: Path) -> Any:
    st = hypothesis.strategies

    @hypothesis.given(data=st.data())
    def check(data: Any) -> None:
        from fico_registry.evaluator.evaluate import evaluate_similarity

        case = draw_case(data, st)
        shape = (n_images(case), len(case["c2i"]))
        i2t = draw_scores(data, st, shape)
        t2i = draw_scores(data, st, shape[::-1]) if data.draw(st.booleans(), label="separate t2i") else None
        if data.draw(st.booleans(), label="as torch"):
            import torch

            i2t = i2t if isinstance(i2t, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(i2t))
        got = typed_or_result(
            lambda: evaluate_similarity(i2t, case["c2i"], t2i=t2i, labels=case["labels"], **_options(case)),
            "evaluate_similarity",
        )
        if isinstance(got, Exception):
            assert _refusal_expected(got, case), f"evaluate_similarity refused a valid input: {got}"
            return
        try:
            want = expected_metrics(
                bruteforce.exact_matrix(_numpy(i2t)),
                _brute_case(case),
                None if t2i is None else bruteforce.exact_matrix(_numpy(t2i)),
            )
        except Skip:
            return
        compare(report_dict(got), want, case["ties"], "evaluate_similarity")

    return check


def _numpy(x: Any) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    import torch

    return x.detach().to(torch.float64).numpy() if x.is_floating_point() else x.numpy()  # exact for every float


def _refusal_expected(error: Exception, case: dict[str, Any]) -> bool:
    """Valid inputs may only be refused for a budget too small for them."""
    from fico_registry.errors import MemoryBudgetError

    return isinstance(error, MemoryBudgetError) and case["memory_budget"] in (300, 2000)


def draw_embeddings(data: Any, st: Any, measure: str, n_img: int, n_txt: int) -> tuple[Any, Any, int | None]:
    """Images and texts whose scores are exact: small ints times powers of two (per row for cosine)."""
    if measure == "hamming":
        return _draw_codes(data, st, n_img, n_txt)
    d = data.draw(st.integers(1, 4), label="d")
    dtype = data.draw(st.sampled_from(("float16", "float32", "float64", "bfloat16")), label="dtype")
    low, high = _EXPONENTS[dtype]
    ints = st.integers(-3, 3)

    def side(rows: int, per_row: bool, exponent: int, vectors: int = 0) -> Any:
        shape = (rows, vectors, d) if vectors else (rows, d)
        values = np.array(
            data.draw(st.lists(ints, min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
        ).reshape(shape)
        if per_row:  # cosine: positive multiples of a few directions, each row its own scale
            pool = np.array([[1, 0, 2, -1], [1, 1, 0, 0], [0, -3, 1, 1], [2, -1, -1, 3]])[:, :d]
            pool[(pool == 0).all(1), 0] = 1
            pick = data.draw(st.lists(st.integers(0, 3), min_size=rows, max_size=rows))
            mult = data.draw(st.lists(st.sampled_from((1, 2, 3, 5)), min_size=rows, max_size=rows))
            values = pool[pick] * np.array(mult)[:, None]
            rows_out = [
                exact_power_of_two(values[r : r + 1], data.draw(st.integers(low, high)), dtype) for r in range(rows)
            ]
            return (
                np.concatenate(rows_out) if isinstance(rows_out[0], np.ndarray) else __import__("torch").cat(rows_out)
            )
        return exact_power_of_two(values, exponent, dtype)

    e_img = data.draw(st.integers(low, high), label="image exponent")
    e_txt = e_img if measure == "euclidean" else data.draw(st.integers(low, high), label="text exponent")
    vectors = data.draw(st.integers(1, 3)) if measure == "maxsim" else 0
    return side(n_img, measure == "cosine", e_img, vectors), side(n_txt, measure == "cosine", e_txt), None


def _draw_codes(data: Any, st: Any, n_img: int, n_txt: int) -> tuple[Any, Any, int | None]:
    bits = data.draw(st.integers(1, 12), label="bits")
    fmt = data.draw(
        st.sampled_from(("bool", "int8 0/1", "int8 +-1", "float +-1", "uint8 0/1", "packed")), label="format"
    )

    def side(rows: int) -> np.ndarray:
        on = np.array(data.draw(st.lists(st.booleans(), min_size=rows * bits, max_size=rows * bits))).reshape(
            rows, bits
        )
        if fmt == "bool":
            return on
        if fmt == "int8 0/1":
            return on.astype(np.int8)
        if fmt in ("int8 +-1", "float +-1"):
            return (on.astype(np.int8) * 2 - 1).astype(np.int8 if fmt == "int8 +-1" else np.float32)
        if fmt == "uint8 0/1":
            return on.astype(np.uint8)
        packed = np.packbits(on, axis=1)
        spare = packed.shape[1] * 8 - bits
        if spare:  # garbage in the padding bits must not count
            packed[:, -1] |= np.uint8((1 << spare) - 1) & np.uint8(data.draw(st.integers(0, 255)))
        return packed

    return side(n_img), side(n_txt), bits if fmt == "packed" else None


def embedding_check(hypothesis: Any, tmp: Path) -> Any:
    st = hypothesis.strategies

    @hypothesis.given(data=st.data())
    def check(data: Any) -> None:
        from fico_registry.evaluator.evaluate import evaluate_embeddings

        case = draw_case(data, st)
        measure = data.draw(st.sampled_from(MEASURES), label="measure")
        n_img = n_images(case)
        images, texts, bits = draw_embeddings(data, st, measure, n_img, len(case["c2i"]))
        got = typed_or_result(
            lambda: evaluate_embeddings(
                images, texts, case["c2i"], case["labels"], measure=measure, bits=bits, **_options(case)
            ),
            f"evaluate_embeddings(measure={measure!r})",
        )
        if isinstance(got, Exception):
            assert _refusal_expected(got, case), f"evaluate_embeddings refused a valid input: {got}"
            return
        img_np, txt_np = _numpy(images), _numpy(texts)
        scores = bruteforce.embedding_scores(img_np, txt_np, measure, bits)
        if not _decidable(img_np, txt_np, scores, measure, _is_float64(images, texts)):
            return
        try:
            want = expected_metrics(scores, _brute_case(case))
        except Skip:
            return
        compare(report_dict(got), want, case["ties"], f"evaluate_embeddings(measure={measure!r})")

    return check


def _is_float64(*arrays: Any) -> bool:
    return any(str(a.dtype).endswith("float64") for a in arrays)


def _decidable(images: np.ndarray, texts: np.ndarray, scores: list[list[Any]], measure: str, float64: bool) -> bool:
    """Whether floating point can reproduce the exact ranking of `scores`.

    A float32 GEMM may give identical candidate vectors different products with one query (the
    edge columns of a block run through another kernel); the engine scores each distinct candidate
    vector once (engine.unique_candidates), so ties between identical vectors are exact and are
    checked. Exact ties between different vectors are only reproducible in float64: skipped in float32.
    """
    if measure == "hamming":
        return True
    if measure == "cosine" and not _cosine_decidable(images, texts, scores):
        return False
    if float64:
        return True
    for rows, vectors in ((scores, texts), (list(zip(*scores, strict=True)), images)):
        for row in rows:
            first: dict[Any, int] = {}
            for j, value in enumerate(row):
                i = first.setdefault(value, j)
                if i != j and not np.array_equal(vectors[i], vectors[j]):
                    return False
    return True


def _parallel(a: np.ndarray, b: np.ndarray) -> bool:
    """a = c * b for some c > 0 (exactly, on the float values)."""
    x, y = [bruteforce.exact_matrix(v[None])[0] for v in (a, b)]
    dot = sum(p * q for p, q in zip(x, y, strict=True))
    return dot > 0 and all(x[i] * y[j] == x[j] * y[i] for i in range(len(x)) for j in range(len(x)))


def _cosine_decidable(images: np.ndarray, texts: np.ndarray, scores: list[list[Any]]) -> bool:
    """Equal exact cosines between non-parallel vectors, or distinct ones closer than float32 resolves,
    are not decided the same way by floating point: such cases are skipped."""
    matrix = np.array([[float(s) for s in row] for row in scores])
    for rows, vectors in ((matrix, texts), (matrix.T, images)):
        for row in rows:
            for a in range(len(row)):
                for b in range(a + 1, len(row)):
                    if row[a] == row[b] and not _parallel(vectors[a], vectors[b]):
                        return False
                    if row[a] != row[b] and abs(row[a] - row[b]) < 1e-5:
                        return False
    return True


def bad_input_check(hypothesis: Any, tmp: Path) -> Any:
    st = hypothesis.strategies

    @hypothesis.given(data=st.data())
    def check(data: Any) -> None:
        from fico_registry.evaluator.evaluate import evaluate_embeddings, evaluate_similarity
        from fico_registry.plugin_api.fuzz_mutations import mutate

        case = draw_case(data, st)
        n_img = n_images(case)
        measure = data.draw(st.sampled_from(MEASURES))
        images, texts, bits = draw_embeddings(data, st, measure, n_img, len(case["c2i"]))
        matrix = draw_scores(data, st, (n_img, len(case["c2i"])))
        call = mutate(data, st, case, images=images, texts=texts, matrix=matrix, measure=measure, bits=bits)
        entry = evaluate_embeddings if call.pop("entry") == "embeddings" else evaluate_similarity
        typed_or_result(lambda: entry(**call), f"{entry.__name__} on a mutated input")

    return check


def cli_check(hypothesis: Any, tmp: Path) -> Any:
    st = hypothesis.strategies

    @hypothesis.given(data=st.data())
    def check(data: Any) -> None:
        from fico_registry.plugin_api.fuzz_mutations import corrupt_file

        case = draw_case(data, st)
        n_img = n_images(case)
        args, arrays, scores = _cli_inputs(data, st, case, n_img)
        files = {name: tmp / f"{name}.npy" for name in arrays}
        for name, array in arrays.items():
            np.save(files[name], array)
            args += [f"--{name}", str(files[name])]
        corrupted = data.draw(st.sampled_from((None, None, *files)), label="corrupt")
        if corrupted is not None:
            corrupt_file(data, st, files[corrupted])
        result = _invoke(args)
        if corrupted is not None:
            assert result.exit_code == 2 and "Error:" in result.output, f"fico {' '.join(args)}: {result.output}"
            return
        assert result.exit_code == 0, f"fico {' '.join(args)} refused a valid input: {result.output}"
        if scores is None:
            return
        try:
            want = expected_metrics(scores, _brute_case(case))
        except Skip:
            return
        compare(json.loads(result.stdout), want, case["ties"], f"fico {args[0]}")

    return check


def _cli_inputs(data: Any, st: Any, case: dict[str, Any], n_img: int) -> tuple[list[str], dict[str, Any], Any]:
    """The command line, the arrays to save as .npy, and the exact scores (None: not comparable)."""
    ks = case["recall_ks"]
    args = [
        "--json",
        "--device",
        "cpu",
        "--no-progress",
        "--ties",
        case["ties"],
        "--map-variant",
        case["map_variant"],
        "--recall-ks",
        str(ks) if isinstance(ks, int) else ",".join(map(str, ks)),
        "--map-ks",
        ",".join("N" if k is None else str(k) for k in case["map_ks"]),
    ]
    arrays: dict[str, Any] = {"caption-map": case["c2i"]}
    if case["labels"] is not None:
        arrays["labels"] = case["labels"]
    if data.draw(st.booleans(), label="embeddings command"):
        measure = data.draw(st.sampled_from(MEASURES), label="measure")
        images, texts, bits = draw_embeddings(data, st, measure, n_img, len(case["c2i"]))
        wide = _is_float64(images, texts)
        arrays["images"], arrays["texts"] = _numpy(images), _numpy(texts)  # bfloat16 -> float64: exact
        args = ["evaluate-embeddings", "--measure", measure, *args, *([] if bits is None else ["--bits", str(bits)])]
        scores = bruteforce.embedding_scores(arrays["images"], arrays["texts"], measure, bits)
        decidable = _decidable(arrays["images"], arrays["texts"], scores, measure, wide)
        return args, arrays, scores if decidable else None
    matrix = _numpy(draw_scores(data, st, (n_img, len(case["c2i"]))))
    arrays["i2t"] = matrix
    return ["evaluate-similarity", *args], arrays, bruteforce.exact_matrix(matrix)


def _invoke(args: list[str]) -> Any:
    from click.testing import CliRunner

    from fico_registry.cli import cli

    result = CliRunner().invoke(cli, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"fico {' '.join(args)}: untyped {type(result.exception).__name__}: {result.exception}")
    assert "Traceback" not in result.output, result.output
    return result
