"""The conformance kit plugin authors call from their own tests.

    from fico_registry.plugin_api.testing import check_model

    def test_conforms():
        check_model("my-model")                      # tiny config, random weights, offline

    def test_checkpoint(tmp_path):
        path = write_original_checkpoint(tmp_path)   # your fixture, in the original layout
        check_model("my-model", checkpoint=path)

    # or, for the whole distribution in one line (check_plugin + check_model of every model):
    test_plugin = plugin_tests("fico-my-model")

Each check raises AssertionError with a message that says what the plugin must fix.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from fico_registry.plugin_api.cards import Input, ModelSpec, OutputKind, QueryTimeAttention
from fico_registry.plugin_api.plugin_testing import caller_distribution, check_plugin, check_provenance, plugin_tests
from fico_registry.plugin_api.registry import get_model_spec

if TYPE_CHECKING:  # pragma: no cover
    from fico_registry.data.corpus import Corpus

__all__ = [
    "check_evaluator_inputs",
    "check_model",
    "check_plugin",
    "check_spec",
    "offline",
    "plugin_tests",
    "sample_batch",
]

SAMPLE_CAPTIONS = (
    "a red circle above a small blue square",
    "two green triangles next to a yellow star",
    "a large purple square in the corner",
    "three small orange circles on a grey background",
    "a blue star left of a red triangle",
    "an empty white scene with one black dot",
)


@contextmanager
def offline() -> Iterator[None]:
    """No hub access: a tiny config must build without the network."""
    keys = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    # huggingface_hub reads the variable once at import: patch its constant too when it is loaded
    hub_constants: Any = sys.modules.get("huggingface_hub.constants")  # a module whose constant we patch
    hub_old = getattr(hub_constants, "HF_HUB_OFFLINE", None)
    if hub_constants is not None:
        hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        if hub_constants is not None:
            hub_constants.HF_HUB_OFFLINE = hub_old
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def sample_batch(input_name: str, n: int = 4, *, seed: int = 0) -> Any:
    """A small batch of the given input kind: pixels, text, regions, or a registered feature pipeline's."""
    import numpy as np

    rng = np.random.default_rng(seed)
    if input_name == Input.PIXELS:
        from PIL import Image

        return [Image.fromarray(rng.integers(0, 256, (40 + 4 * i, 48, 3), dtype=np.uint8)) for i in range(n)]
    if input_name == Input.TEXT:
        return [
            SAMPLE_CAPTIONS[i % len(SAMPLE_CAPTIONS)] + ("" if i < len(SAMPLE_CAPTIONS) else f" {i}") for i in range(n)
        ]
    # feature inputs arrive as float32 numpy rows, as evaluation's ArraySource hands them over
    if input_name == Input.REGIONS:  # bottom-up-attention-like: non-negative (n, 36, 2048)
        return rng.gamma(0.5, 1.0, size=(n, 36, 2048)).astype(np.float32)
    from fico_registry.plugin_api.registry import get_registry

    pipeline = get_registry().feature_pipeline(input_name)
    if pipeline is not None:  # e.g. vgg19-fc7 (post-ReLU, non-negative), doc2vec (signed)
        if pipeline.modality == "image":
            return rng.gamma(0.5, 1.0, size=(n, pipeline.dim)).astype(np.float32)
        return rng.standard_normal((n, pipeline.dim)).astype(np.float32)
    raise ValueError(f"no built-in sample for input {input_name!r}: pass image_batch= / text_batch= to check_model")


def slice_batch(batch: Any, start: int, stop: int) -> Any:
    if isinstance(batch, dict):
        return {k: slice_batch(v, start, stop) for k, v in batch.items()}
    return batch[start:stop]


def _concat(parts: list[Any]) -> Any:
    import torch

    if isinstance(parts[0], dict):
        return {k: _concat([p[k] for p in parts]) for k in parts[0]}
    return torch.cat(parts, dim=0)


def _assert_close(a: Any, b: Any, *, what: str, atol: float, rtol: float) -> None:
    import torch

    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{what}: output keys differ ({list(a)} vs {list(b)})"
        for k in a:
            _assert_close(a[k], b[k], what=f"{what}[{k!r}]", atol=atol, rtol=rtol)
        return
    assert a.shape == b.shape, f"{what}: shapes differ {tuple(a.shape)} vs {tuple(b.shape)}"
    if a.is_floating_point():
        assert torch.allclose(a.float(), b.float(), atol=atol, rtol=rtol), (
            f"{what}: max abs difference {(a.float() - b.float()).abs().max().item():.3g} exceeds atol={atol}"
        )
    else:
        assert torch.equal(a, b), f"{what}: integer outputs differ"


def _assert_cpu(out: Any, what: str) -> None:
    tensors = out.values() if isinstance(out, dict) else [out]
    for t in tensors:
        assert t.device.type == "cpu", f"{what}: output is on {t.device}, expected cpu (device='cpu' was requested)"


def check_spec(name: str) -> ModelSpec:
    """The model is registered, its card is complete, and its factory imports."""
    from fico_registry.plugin_api.registry import resolve_callable

    spec = get_model_spec(name)
    assert spec.distribution, f"{name}: no distribution recorded; register it through the fico_registry entry point"
    assert "tiny" in spec.configs and "default" in spec.configs, f"{name}: needs 'default' and 'tiny' configs"
    assert spec.paper and spec.license, f"{name}: the card should cite the paper and state the license"
    assert callable(resolve_callable(spec.factory)), f"{name}: factory {spec.factory} is not callable"
    return spec


def check_model(
    name: str,
    *,
    dist: str | None = None,
    config: str = "tiny",
    checkpoint: Any = None,
    image_batch: Any = None,
    text_batch: Any = None,
    n: int = 4,
    atol: float = 1e-5,
    rtol: float = 1e-4,
) -> Any:
    """Load the model on CPU, offline, and check what it returns against its card.

    Checks: the card comes from `dist` (default: the distribution whose pyproject.toml holds the
    calling test file, when it declares a fico_registry entry point) and its plugin loaded without
    problems; card valid, builds offline, output kind / shape / dtype, CPU placement,
    determinism, batch-size invariance, both image forms evaluation passes (PIL lists, and the
    stacked tensors of `preprocess_image` prepared in threads), and for scorers block invariance.
    Returns the Model.
    """
    from fico_registry.models.loading import load_model

    check_provenance(name, dist if dist is not None else caller_distribution())
    spec = check_spec(name)
    with offline():
        model = load_model(name, config=config, checkpoint=checkpoint, device="cpu")
    images = image_batch if image_batch is not None else sample_batch(spec.image_input, n)
    texts = text_batch if text_batch is not None else sample_batch(spec.text_input, n, seed=1)
    n_img, n_txt = _length(images), _length(texts)
    assert n_img >= 2 and n_txt >= 2, "give at least two images and two texts"

    img = model.encode_images(images)  # Model checks kind, rows, width, finiteness
    txt = model.encode_texts(texts)
    _assert_cpu(img, f"{name}.encode_images")
    _assert_cpu(txt, f"{name}.encode_texts")
    _assert_close(model.encode_images(images), img, what=f"{name}.encode_images twice", atol=0, rtol=0)
    _assert_close(model.encode_texts(texts), txt, what=f"{name}.encode_texts twice", atol=0, rtol=0)

    one_by_one = _concat([model.encode_images(slice_batch(images, i, i + 1)) for i in range(n_img)])
    _assert_close(one_by_one, img, what=f"{name}.encode_images batch size 1 vs {n_img}", atol=atol, rtol=rtol)
    one_by_one = _concat([model.encode_texts(slice_batch(texts, i, i + 1)) for i in range(n_txt)])
    _assert_close(one_by_one, txt, what=f"{name}.encode_texts batch size 1 vs {n_txt}", atol=atol, rtol=rtol)
    if spec.image_input == Input.PIXELS and isinstance(images, list):
        _check_preprocessed_images(model, images, img, atol=atol, rtol=rtol)

    if spec.output is OutputKind.CONTINUOUS:
        emb = img["embeds"] if isinstance(img, dict) else img
        assert emb.is_floating_point(), f"{name}: continuous embeddings must be floating point"
    if spec.query_time_attention is QueryTimeAttention.CROSS_ATTENTION:
        _check_scorer(model, img, txt, n_img, n_txt, atol=atol, rtol=rtol)
    if spec.query_time_attention is QueryTimeAttention.FUSION_RERANK:
        import torch

        k = min(n_img, n_txt)
        pairs = model.score_pairs(slice_batch(img, 0, k), slice_batch(txt, 0, k))
        assert torch.isfinite(pairs).all(), f"{name}.score_pairs returned NaN or inf"
        again = _concat([model.score_pairs(slice_batch(img, i, i + 1), slice_batch(txt, i, i + 1)) for i in range(k)])
        _assert_close(again, pairs, what=f"{name}.score_pairs one pair at a time", atol=atol, rtol=rtol)
    return model


def _check_preprocessed_images(model: Any, images: list[Any], from_pil: Any, *, atol: float, rtol: float) -> None:
    """With preprocess_image, evaluation hands encode_images a stacked (B, 3, H, W) tensor built in threads."""
    preprocess = getattr(model.encoder, "preprocess_image", None)
    if preprocess is None:
        return
    from fico_registry.models.inputs import PixelSource

    assert callable(preprocess), f"{model.name}: preprocess_image must be a method (PIL image -> (3, H, W) tensor)"
    # the very code evaluation runs (fico_registry.models.inputs.PixelSource), over these sample images
    # batch() reads only n_images and load_image of the corpus, which the stand-in provides
    stacked = PixelSource(cast("Corpus", _InMemoryImages(images)), preprocess=preprocess).batch(0, len(images))
    what = f"{model.name}.encode_images on the stacked preprocess_image tensor {tuple(stacked.shape)}"
    import torch

    try:
        with torch.inference_mode():  # as fico_registry.models.encoding.encode_side calls it
            out = model.encode_images(stacked)
    except Exception as exc:
        raise AssertionError(
            f"{what} raised {type(exc).__name__}: {exc}. Evaluation passes this form (preprocess_image in threads, "
            "then torch.stack) whenever the encoder has preprocess_image: accept a (B, 3, H, W) tensor too"
        ) from exc
    _assert_close(out, from_pil, what=f"{what} vs the PIL list", atol=atol, rtol=rtol)
    one_by_one = _concat([model.encode_images(stacked[i : i + 1]) for i in range(len(images))])
    _assert_close(one_by_one, out, what=f"{what}, batch size 1 vs {len(images)}", atol=atol, rtol=rtol)


class _InMemoryImages:
    """The two things PixelSource asks of a corpus."""

    def __init__(self, images: list[Any]) -> None:
        self.images = images
        self.n_images = len(images)

    def load_image(self, index: int) -> Any:
        return self.images[index]


def _check_scorer(model: Any, img: Any, txt: Any, n_img: int, n_txt: int, *, atol: float, rtol: float) -> None:
    import torch

    full = model.score(img, txt)
    assert torch.isfinite(full).all(), f"{model.name}.score returned NaN or inf"
    # The engine feeds arbitrary blocks: a block's scores must equal the same cells of a bigger one.
    block = model.score(slice_batch(img, 1, n_img), slice_batch(txt, 0, n_txt - 1))
    _assert_close(block, full[1:, : n_txt - 1], what=f"{model.name}.score on a sub-block", atol=atol, rtol=rtol)


def _length(batch: Any) -> int:
    if isinstance(batch, dict):
        return len(next(iter(batch.values())))
    return len(batch)


def check_evaluator_inputs(max_examples: int = 100, *, cli: bool = True, seed: int | None = 0) -> None:
    """Fuzz the evaluator (API and CLI) with random shapes, dtypes, magnitudes, ties, NaN / inf and options.

    Every refusal must be a typed fico_registry error, nothing may hang, and on small valid inputs
    every number must equal an exact brute force (fico_registry.evaluator.reference). Needs hypothesis
    (the test extra). See fico_registry.plugin_api.fuzzing for what is generated and compared.
    """
    from fico_registry.plugin_api.fuzzing import check_evaluator_inputs as run

    run(max_examples, cli=cli, seed=seed)
