"""Input fuzzing of the evaluator: random shapes, dtypes, magnitudes, ties, NaN / inf, options.

check_evaluator_inputs() drives evaluate_similarity, evaluate_embeddings and the CLI commands
`fico evaluate-similarity` / `fico evaluate-embeddings` with hypothesis-generated inputs and asserts
  - every refusal is a typed fico_registry error (FicoError), never another exception;
  - no call hangs (each example runs under a watchdog);
  - on valid small inputs every number equals fico_registry.evaluator.reference (exact scores, every tie
    order enumerated) to 1e-9.
Valid inputs are built so their scores are exact in floating point: small integers times a power of
two per side (2**-100 .. 2**100, i.e. about 1e-30 .. 1e30 in float32; wider in float64), so a
mismatch is the evaluator's, not rounding's. Cosine rows get their own positive factor (scale
invariance); rows with equal exact cosine that are not parallel are skipped (float32 cannot decide
those ties), as are rows whose tie orders are too many to enumerate.

MedR and PR11 under ties="expected" are not compared (their definition is being changed to the
exact expectation, see docs/metrics.md); under "optimistic" / "pessimistic" they are.
"""

from __future__ import annotations

import math
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from fico_registry.errors import FicoError
from fico_registry.evaluator import reference as bruteforce

TOLERANCE = 1e-9
EXAMPLE_TIMEOUT_S = 60
INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
_FLOAT_DTYPES = ("float16", "float32", "float64")
# power-of-two exponents a side may be scaled by, per dtype, keeping every input a normal number
_EXPONENTS = {"float16": (-8, 8), "float32": (-100, 100), "float64": (-1000, 1000), "bfloat16": (-100, 100)}


class Skip(Exception):
    """The generated case cannot be decided exactly (too many tie orders, undecidable cosine ties)."""


def _hypothesis() -> Any:
    try:
        import hypothesis
    except ImportError:  # a test extra, not a dependency of the evaluator
        raise FicoError(
            "fico_registry.plugin_api.testing.check_evaluator_inputs needs hypothesis: pip install "
            "'fico-registry[test]' "
            "(or pip install hypothesis)"
        ) from None
    return hypothesis


@contextmanager
def watchdog(seconds: int) -> Iterator[None]:
    """Raise AssertionError in the main thread when the body runs longer than `seconds` (a hang)."""
    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _hang(signum: int, frame: Any) -> None:
        raise AssertionError(f"the evaluator ran over {seconds} s on a tiny input: a hang")

    previous = signal.signal(signal.SIGALRM, _hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def typed_or_result(call: Callable[[], Any], what: str) -> Any:
    """call(), with any exception other than a FicoError turned into an AssertionError naming `what`."""
    try:
        with watchdog(EXAMPLE_TIMEOUT_S):
            return call()
    except FicoError as exc:
        return exc
    except AssertionError:
        raise
    except Exception as exc:  # an untyped failure is the bug this check exists to find
        raise AssertionError(f"{what}: untyped {type(exc).__name__}: {exc}") from exc


def compare(report: dict[str, Any], expected: dict[str, Any], ties: str, what: str) -> None:
    """Assert the report's numbers equal the brute force's (MedR / PR11 under 'expected' excepted)."""
    for direction, want in expected.items():
        for name, value in want["instance"].items():
            if name == "MedR" and ties == "expected":
                continue  # definition changing to the exact expectation (issue 17)
            _close(report["instance"][direction][name], value, f"{what}: {direction} {name}")
        if want["category"] is None:
            continue
        for name, value in want["category"].items():
            got = report["category"][direction][name]
            if name == "PR11" and got is None and "mAP@N" not in want["category"]:
                continue  # PR11 comes with whole-row sorts only (mAP@N asked, or every K >= n)
            _close(got, value, f"{what}: {direction} {name}")


def _close(got: Any, want: Any, what: str) -> None:
    if want is None or got is None:
        assert got is None and want is None, f"{what}: evaluator {got!r}, brute force {want!r}"
        return
    got_a, want_a = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    assert got_a.shape == want_a.shape and np.allclose(got_a, want_a, rtol=TOLERANCE, atol=TOLERANCE), (
        f"{what}: evaluator {got!r}, brute force {want!r}"
    )


def expected_metrics(i2t: list[list[Any]], case: dict[str, Any], t2i: list[list[Any]] | None = None) -> dict[str, Any]:
    try:
        return bruteforce.evaluate(
            i2t,
            case["c2i"],
            t2i,
            case["labels"],
            recall_ks=case["recall_ks"],
            map_ks=case["map_ks"],
            ties=case["ties"],
            map_variant=case["map_variant"],
        )
    except bruteforce.TooManyOrders as exc:
        raise Skip(str(exc)) from None


def report_dict(report: Any) -> dict[str, Any]:
    return {"instance": report.instance, "category": report.category or {}}


def check_evaluator_inputs(max_examples: int = 100, *, cli: bool = True, seed: int | None = 0) -> None:
    """Fuzz evaluate_similarity, evaluate_embeddings (and the CLI) against brute force and for typed errors.

    Raises AssertionError with the failing input (shrunk by hypothesis) on the first problem.
    seed=None lets hypothesis pick fresh examples each run; an int makes runs repeatable.
    """
    hypothesis = _hypothesis()
    from fico_registry.plugin_api import fuzz_cases

    checks = [fuzz_cases.similarity_check, fuzz_cases.embedding_check, fuzz_cases.bad_input_check]
    if cli:
        checks.append(fuzz_cases.cli_check)
    settings = hypothesis.settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=seed is not None,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    with tempfile.TemporaryDirectory(prefix="fico-fuzz-") as tmp:
        for make in checks:
            test = make(hypothesis, Path(tmp))
            settings(test)()


def exact_power_of_two(values: np.ndarray, exponent: int, dtype: str) -> Any:
    """Small integers times 2**exponent, in `dtype` (exact: both factors are representable)."""
    if dtype == "bfloat16":
        import torch

        return torch.ldexp(torch.from_numpy(values.astype(np.float32)), torch.tensor(float(exponent))).to(
            torch.bfloat16
        )
    out = np.ldexp(values.astype(np.float64), exponent).astype(dtype)
    assert np.all(np.isfinite(out)) and math.isfinite(float(np.abs(out).max(initial=0)))
    return out
