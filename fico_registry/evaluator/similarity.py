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
        if x.is_complex():
            raise DTypeError(f"{name} has dtype {x.dtype}; pass real numbers")
        return x.detach()  # outputs of a model in training mode: evaluated as values, no graph
    if isinstance(x, (list, tuple)):
        try:
            x = np.asarray(x)
        except ValueError as exc:  # numpy refuses ragged nesting
            raise ShapeError(f"{name} is a ragged list (rows of different lengths); give equal-length rows") from exc
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "biuf" or (x.dtype.kind == "f" and x.dtype.itemsize > 8):
            raise DTypeError(
                f"{name} has dtype {x.dtype}; pass a numeric array (float embeddings or scores, int/bool codes)"
            )
        if not x.flags.writeable:
            x = np.array(x)  # memmaps are read-only; torch wants writable memory
        return torch.from_numpy(np.ascontiguousarray(x))
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
        info["code_format"] = code_format_of(img, bits)
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
        for t, name in ((img, "images"), (txt, "texts")):
            if _has_zero_row(t):  # chunked: a whole-matrix temporary set the peak RSS of large runs
                zero = (t == 0).all(dim=-1)
                raise NonFiniteError(
                    f"{name}: {int(zero.sum())} all-zero embeddings (first: row {int(zero.nonzero()[0, 0])}) have no "
                    "direction, so cosine similarity is undefined for them; drop them or use measure='inner_product'"
                )
        img = torch.nn.functional.normalize(rescale_rows(img), dim=-1)
        txt = torch.nn.functional.normalize(rescale_rows(txt), dim=-1)
    else:
        img, txt, exponents = rescale_sides(img, txt, same_scale=measure == "euclidean")
        if exponents is not None:
            info["rescaled_by_powers_of_two"] = exponents
    info["work_dtype"] = str(work).replace("torch.", "")
    return img, txt, info


# Magnitudes between 2**-32 and 2**32 cannot overflow a score (|score| <= 3 * d * 2**64) nor lose the
# products of their largest entries to underflow, in float32 or float64.
_SAFE_EXPONENT = 32


def _power_of_two_exponent(max_abs: torch.Tensor) -> torch.Tensor:
    """e with max_abs * 2**-e in [0.5, 1) (0 for zero): scaling by 2**-e is exact."""
    _, exponent = torch.frexp(max_abs)
    return torch.where(max_abs > 0, exponent, torch.zeros_like(exponent))


def rescale_rows(x: torch.Tensor) -> torch.Tensor:
    """Each (non-zero) row divided by its largest |entry|, before the normalisation of cosine.

    Entries become correctly rounded ratios in [-1, 1], which are the same for every positive
    multiple of a row: cosine is then scale-invariant bit for bit, and no row has a norm below
    normalize()'s eps (1e-12) or a squared norm that overflows.
    """
    return x / x.abs().amax(dim=-1, keepdim=True)


def rescale_sides(
    images: torch.Tensor, texts: torch.Tensor, *, same_scale: bool
) -> tuple[torch.Tensor, torch.Tensor, dict[str, int] | None]:
    """Scale each side by one power of two when its magnitudes could overflow or underflow the scores.

    A positive factor per side scales every score of a query row alike, so rankings are unchanged
    (euclidean needs the same factor on both sides). Ordinary magnitudes are left untouched.
    """
    e_img = int(_power_of_two_exponent(images.abs().amax()))
    e_txt = int(_power_of_two_exponent(texts.abs().amax()))
    if same_scale:
        e_img = e_txt = max(e_img, e_txt)
    if all(abs(e) <= _SAFE_EXPONENT for e in (e_img, e_txt)):
        return images, texts, None
    images = torch.ldexp(images, torch.tensor(-float(e_img), dtype=images.dtype, device=images.device))
    texts = torch.ldexp(texts, torch.tensor(-float(e_txt), dtype=texts.dtype, device=texts.device))
    return images, texts, {"images": -e_img, "texts": -e_txt}


def pack_codes(codes: torch.Tensor, name: str, bits: int | None = None) -> tuple[torch.Tensor, int]:
    """{0,1} / {-1,+1} codes (bool, int or float) or packed uint8 bits -> packed uint8, n_bits.

    A uint8 array is packed bits (np.packbits) when its width is ceil(`bits` / 8), or when `bits`
    is not given and it holds values other than 0/1. A uint8 array of only 0/1 without `bits` is
    read as unpacked bits, one per column (code_format_of says which reading applies).
    The padding bits of a packed last byte are cleared, so they never count.
    """
    if codes.ndim != 2:
        raise ShapeError(f"{name}: hash codes must be 2-d (n, bits) or packed (n, bytes); got {tuple(codes.shape)}")
    if bits is not None and codes.shape[1] not in (bits, (bits + 7) // 8):
        raise ShapeError(
            f"{name}: {codes.shape[1]} columns for {bits}-bit codes (expected {bits}, or {(bits + 7) // 8} packed "
            "bytes)"
        )
    if codes.dtype == torch.uint8:
        if bits is not None and codes.shape[1] == (bits + 7) // 8 and codes.shape[1] != bits:
            return mask_padding_bits(codes, bits), bits
        values = set(torch.unique(codes).tolist())
        if not values <= {0, 1}:
            return codes.contiguous(), codes.shape[1] * 8
        # only 0/1 and no bits=: one bit per column, as `(h > 0).astype(np.uint8)` writes them
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


def mask_padding_bits(packed: torch.Tensor, bits: int) -> torch.Tensor:
    """Packed codes with the bits past `bits` in the last byte cleared."""
    packed = packed.contiguous()
    spare = packed.shape[1] * 8 - bits
    if spare <= 0:
        return packed
    packed = packed.clone()
    packed[:, -1] &= (0xFF << spare) & 0xFF  # np.packbits fills a byte from its high bit down
    return packed


def code_format_of(codes: torch.Tensor, bits: int | None) -> str:
    """How pack_codes reads `codes`: 'packed bytes' or 'unpacked bits' (for the report)."""
    if codes.dtype != torch.uint8:
        return "unpacked bits"
    if bits is not None:
        return "packed bytes" if codes.shape[1] == (bits + 7) // 8 and codes.shape[1] != bits else "unpacked bits"
    return "unpacked bits" if bool((codes <= 1).all()) else "packed bytes"


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
    q_words = _as_words(queries.numpy())
    c_words = np.ascontiguousarray(_as_words(candidates.numpy()).T)  # (words, n): each word contiguous
    b, words = q_words.shape
    n = c_words.shape[1]
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
            np.bitwise_xor(q_words[:, j : j + 1], c_words[j, None, start:stop], out=xor[:, :w])
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


def pad_to_gemm_rows(x: torch.Tensor) -> torch.Tensor:
    """x with zero rows appended up to MIN_GEMM_ROWS (x itself when it has that many already)."""
    rows = x.shape[0]
    if rows >= MIN_GEMM_ROWS:
        return x
    return torch.cat([x, x.new_zeros((MIN_GEMM_ROWS - rows, *x.shape[1:]))])


def image_text_dot(images: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
    """images @ texts.T, computed so each cell is bit-identical whatever the block it sits in.

    Both directions use this image-major product, so i2t and t2i rank the very same numbers, and
    a block of rows (or columns) equals the same cells of the full product.
    """
    rows = images.shape[0]
    if images.device.type == "cpu":
        images = pad_to_gemm_rows(images)
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
        dots = 2 * dots - (
            (texts * texts).sum(-1)[None, :] if query_side == "image" else (images * images).sum(-1)[:, None]
        )
    elif measure not in ("cosine", "inner_product", "maxsim"):
        raise OptionError(f"unknown measure {measure!r}")
    return dots if query_side == "image" else dots.T.contiguous()


def _has_zero_row(x: torch.Tensor, rows: int = 1 << 15) -> bool:
    """Whether any row is all zeros, in row chunks: x.abs() of the whole matrix was a full-size
    temporary (512 MB for 500,000 x 256 float32) and set the peak RSS of large evaluations."""
    return any(bool((x[i : i + rows].abs().sum(-1) == 0).any()) for i in range(0, x.shape[0], rows))
