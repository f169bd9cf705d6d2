"""Similarity measures: validated inputs in, blocks of scores (higher = more similar) out.

Scores only need to rank candidates within one query's row, so measures may drop terms that are
constant along a row (euclidean drops |q|^2). Hamming scores are exact integers (-distance), so
rankings and ties are identical on every device.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fico_registry.errors import (
    DTypeError,
    EmptyInputError,
    NonBinaryCodesError,
    NonFiniteError,
    OptionError,
    ShapeError,
)

MEASURES = ("cosine", "inner_product", "euclidean", "hamming", "maxsim")
_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def as_tensor(x: Any, name: str) -> torch.Tensor:
    """numpy (incl. memmap) or torch -> torch without copying where possible; never from pickles."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        if x.dtype == object:
            raise DTypeError(f"{name} has dtype object; pass a numeric array")
        if not x.flags.writeable:
            x = np.array(x)  # memmaps are read-only; torch wants writable memory
        return torch.from_numpy(np.ascontiguousarray(x))
    if isinstance(x, (list, tuple)):
        return torch.as_tensor(np.asarray(x))
    raise DTypeError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}")


def check_finite(x: torch.Tensor, name: str) -> None:
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise NonFiniteError(f"{name} holds {bad} NaN or infinite values; fix the model output before evaluating")


def check_measure(measure: str) -> None:
    if measure not in MEASURES:
        raise OptionError(f"measure must be one of {', '.join(MEASURES)}; got {measure!r}")


def prepare_embeddings(
    images: Any, texts: Any, measure: str, device: torch.device, bits: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Validate and move embeddings to `device` in the form the measure computes on."""
    check_measure(measure)
    img = as_tensor(images, "images")
    txt = as_tensor(texts, "texts")
    for t, name in ((img, "images"), (txt, "texts")):
        if t.shape[0] == 0:
            raise EmptyInputError(f"{name} has no rows")
    info: dict[str, Any] = {"input_dtype": str(img.dtype).replace("torch.", "")}
    if measure == "hamming":
        img_bits, n_bits = pack_codes(img, "images", bits)
        txt_bits, n_bits_t = pack_codes(txt, "texts", bits)
        if n_bits != n_bits_t:
            raise ShapeError(f"images have {n_bits}-bit codes but texts have {n_bits_t}-bit codes")
        info["bits"] = n_bits
        return img_bits.to(device), txt_bits.to(device), info
    for t, name in ((img, "images"), (txt, "texts")):
        if t.dtype not in _FLOATS:
            raise DTypeError(
                f"{name} has dtype {t.dtype}; measure={measure!r} needs float embeddings "
                "(integer or binary codes go with measure='hamming')"
            )
        check_finite(t, name)
    if measure == "maxsim":
        if img.ndim != 3 or txt.ndim != 2:
            raise ShapeError(
                f"measure='maxsim' takes images as (n_images, n_vectors, d) and texts as (n_texts, d); "
                f"got {tuple(img.shape)} and {tuple(txt.shape)}"
            )
    elif img.ndim != 2 or txt.ndim != 2:
        raise ShapeError(f"embeddings must be 2-d (n, d); got images {tuple(img.shape)}, texts {tuple(txt.shape)}")
    if img.shape[-1] != txt.shape[-1]:
        raise ShapeError(f"images have width {img.shape[-1]} but texts have width {txt.shape[-1]}")
    if img.shape[-1] == 0:
        raise EmptyInputError("embeddings have zero width")
    # fp64 stays fp64 (exact ties as given); fp16/bf16 are widened exactly to fp32
    work = torch.float64 if img.dtype == torch.float64 or txt.dtype == torch.float64 else torch.float32
    img = img.to(device=device, dtype=work)
    txt = txt.to(device=device, dtype=work)
    if measure == "cosine":
        img = torch.nn.functional.normalize(img, dim=-1)
        txt = torch.nn.functional.normalize(txt, dim=-1)
        if _has_zero_row(img) or _has_zero_row(txt):
            raise NonFiniteError("an all-zero embedding has no direction: cosine similarity is undefined for it")
    info["work_dtype"] = str(work).replace("torch.", "")
    return img, txt, info


def pack_codes(codes: torch.Tensor, name: str, bits: int | None = None) -> tuple[torch.Tensor, int]:
    """{0,1} / {-1,+1} codes (bool, int or float) or packed uint8 bits -> packed uint8, n_bits.

    A uint8 array is packed bits (np.packbits) when its width times 8 equals `bits`, or when
    `bits` is not given and it holds values other than 0/1. A uint8 array of only 0/1 without
    `bits` is ambiguous and refused rather than guessed.
    """
    if codes.ndim != 2:
        raise ShapeError(f"{name}: hash codes must be 2-d (n, bits) or packed (n, bytes); got {tuple(codes.shape)}")
    if bits is not None and codes.shape[1] not in (bits, (bits + 7) // 8):
        raise ShapeError(f"{name}: {codes.shape[1]} columns for {bits}-bit codes (expected {bits}, or {(bits + 7) // 8} packed bytes)")
    if codes.dtype == torch.uint8:
        if bits is not None and codes.shape[1] == (bits + 7) // 8 and codes.shape[1] != bits:
            return codes.contiguous(), bits
        values = set(torch.unique(codes).tolist())
        if not values <= {0, 1}:
            return codes.contiguous(), codes.shape[1] * 8
        if bits is None:
            raise NonBinaryCodesError(
                f"{name}: a uint8 array of only 0/1 values is ambiguous (packed bytes or one bit per column?); "
                "pass bits=N, or give unpacked codes as bool/int8 and packed codes from np.packbits"
            )
    if codes.is_floating_point():
        check_finite(codes, name)
    values = set(torch.unique(codes).tolist())
    if values <= {0, 1}:
        on = codes.to(torch.bool)
    elif values <= {-1, 1}:
        on = codes > 0
    else:
        sample = sorted(values)[:6]
        raise NonBinaryCodesError(
            f"{name}: measure='hamming' needs codes in {{0,1}}, {{-1,+1}} or packed uint8 bits; found values {sample}. "
            "Binarise with sign() (and map 0 to +1) first."
        )
    packed = np.packbits(on.cpu().numpy(), axis=1)
    return torch.from_numpy(packed), codes.shape[1]


def hamming_scores(queries: torch.Tensor, candidates: torch.Tensor, n_bits: int, chunk: int = 1 << 16) -> torch.Tensor:
    """-(Hamming distance) between packed codes, as int32 (b, n_candidates).

    CPU: XOR + popcount (numpy.bitwise_count) over 64-bit words. CUDA: a +-1 matrix product,
    which is exact in fp16 with fp32 accumulation for codes up to 2048 bits.
    """
    if queries.device.type == "cuda":
        q = _unpack_signed(queries, n_bits)
        c = _unpack_signed(candidates, n_bits)
        dtype = torch.float16 if n_bits <= 2048 else torch.float32
        dot = (q.to(dtype) @ c.to(dtype).T).float()
        return ((dot - n_bits) / 2).round().to(torch.int32)  # -(n - dot)/2
    q = _as_words(queries.numpy())
    c = np.ascontiguousarray(_as_words(candidates.numpy()).T)  # (words, n): each word contiguous
    b, words = q.shape
    n = c.shape[1]
    out = np.empty((b, n), dtype=np.int32)
    # candidate slices small enough that the XOR / count temporaries stay in cache (~2 MB)
    step = max(256, min(n, chunk * 4 // max(1, b)))
    xor = np.empty((b, step), dtype=np.uint64)
    count = np.empty((b, step), dtype=np.uint8)
    total = np.empty((b, step), dtype=np.int32)
    for start in range(0, n, step):
        stop = min(n, start + step)
        w = stop - start
        for j in range(words):
            np.bitwise_xor(q[:, j : j + 1], c[j, None, start:stop], out=xor[:, :w])
            np.bitwise_count(xor[:, :w], out=count[:, :w])
            if words == 1:
                np.subtract(0, count[:, :w], out=out[:, start:stop], dtype=np.int32)
            elif j == 0:
                np.copyto(total[:, :w], count[:, :w], casting="unsafe")
            else:
                np.add(total[:, :w], count[:, :w], out=total[:, :w], casting="unsafe")
        if words > 1:
            np.negative(total[:, :w], out=out[:, start:stop])
    return torch.from_numpy(out)


def _as_words(packed: np.ndarray) -> np.ndarray:
    """Packed bytes -> uint64 words (zero padding does not change XOR distances)."""
    n, n_bytes = packed.shape
    pad = (-n_bytes) % 8
    if pad:
        packed = np.concatenate([packed, np.zeros((n, pad), dtype=np.uint8)], axis=1)
    return np.ascontiguousarray(packed).view(np.uint64)


def _unpack_signed(packed: torch.Tensor, n_bits: int) -> torch.Tensor:
    shifts = torch.arange(7, -1, -1, device=packed.device, dtype=torch.uint8)
    bits = (packed.unsqueeze(-1) >> shifts) & 1
    bits = bits.reshape(packed.shape[0], -1)[:, :n_bits]
    return bits.to(torch.int8) * 2 - 1


MIN_GEMM_ROWS = 16  # below this MKL switches kernels and rounds differently; pad to stay on one path


def image_text_dot(images: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
    """images @ texts.T, computed so each cell is bit-identical whatever the block it sits in.

    Both directions use this image-major product, so i2t and t2i rank the very same numbers, and
    a block of rows (or columns) equals the same cells of the full product.
    """
    rows = images.shape[0]
    if images.device.type == "cpu" and rows < MIN_GEMM_ROWS:
        images = torch.cat([images, images.new_zeros((MIN_GEMM_ROWS - rows, *images.shape[1:]))])
    return (images @ texts.T)[:rows]


def score_block(
    images: torch.Tensor, texts: torch.Tensor, measure: str, *, query_side: str, n_bits: int = 0
) -> torch.Tensor:
    """Scores of a block of queries against all candidates, (b, n_candidates).

    query_side "image": `images` is the query block and `texts` all candidates; "text": the
    reverse. maxsim images hold several vectors (n, m, d); the best one counts.
    """
    if measure == "hamming":
        queries, candidates = (images, texts) if query_side == "image" else (texts, images)
        return hamming_scores(queries, candidates, n_bits)
    if measure == "maxsim":
        n, m, d = images.shape
        dots = image_text_dot(images.reshape(n * m, d), texts).reshape(n, m, -1).amax(dim=1)
    else:
        dots = image_text_dot(images, texts)
    if measure == "euclidean":
        # -|q - c|^2 up to |q|^2, which is constant along a query's row
        dots = 2 * dots - ((texts * texts).sum(-1)[None, :] if query_side == "image" else (images * images).sum(-1)[:, None])
    elif measure not in ("cosine", "inner_product", "maxsim"):
        raise OptionError(f"unknown measure {measure!r}")
    return dots if query_side == "image" else dots.T.contiguous()


def _has_zero_row(x: torch.Tensor, rows: int = 1 << 15) -> bool:
    """Whether any row is all zeros, in row chunks: x.abs() of the whole matrix was a full-size
    temporary (512 MB for 500,000 x 256 float32) and set the peak RSS of large evaluations."""
    return any(bool((x[i : i + rows].abs().sum(-1) == 0).any()) for i in range(0, x.shape[0], rows))
