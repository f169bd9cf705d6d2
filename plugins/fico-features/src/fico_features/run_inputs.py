"""The feature pipelines of one training run: fitted, cached, saved beside its checkpoint, reloaded.

A hashing model trained on VGG-19 fc7 + Doc2Vec features is only meaningful with the SAME
pipelines at test time: the same VGG weights and preprocessing and, above all, the same Doc2Vec
model (two Doc2Vec models trained apart have unrelated vector spaces). `RunInputs`

- builds the two pipelines from registered FeatureSpecs (a config name, or a dict over "default"),
- `fit(train)`: trains the text pipeline on the training captions (Doc2Vec; cached by content),
- `features(corpus, side)`: (n, dim) float32 features through the embedding cache, with the
  same cache key as fico_registry.models.pipelines, so evaluation reuses what training computed,
- `save(folder)`: writes `inputs.json` (pipelines, configs, fingerprints) and `doc2vec/` (the
  pickle-free model folder) beside the checkpoint; `RunInputs.load(folder)` rebuilds identical
  pipelines and refuses if a fingerprint changed (e.g. other VGG weights on this machine),
- `attach(corpus, folder)`: the corpus with both features attached, which
  `fico_registry.evaluate` uses before any pipeline of its own.

`run_inputs(...)` is what a training recipe calls: rank 0 fits, fills the embedding cache and
saves the pipelines; under torchrun the other ranks then load them and read the cache.

Features already attached to a corpus under the pipeline's name (e.g. a published feature file,
`corpus.with_features("vgg19-fc7", ...)`) take precedence, as in fico_registry.models.inputs; the run
records that, and `attach` then insists that the test corpus brings the same kind of features.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fico_registry.errors import ConfigError, DataFormatError

INPUTS_FILE = "inputs.json"
DOC2VEC_FOLDER = "doc2vec"
FORMAT = "fico-run-inputs/1"
SIDES = ("image", "text")


def resolve_config(pipeline: str, config: str | Mapping[str, Any]) -> tuple[dict[str, Any], str | dict[str, Any]]:
    """(the full config dict, what identifies it in cache keys: its name, or the dict itself)."""
    from fico_registry.plugin_api.registry import get_registry

    spec = get_registry().feature_pipeline(pipeline)
    if spec is None:
        raise ConfigError(f"no feature pipeline {pipeline!r} is installed (pip install fico-features)")
    if isinstance(config, str):
        if config not in spec.configs:
            raise ConfigError(
                f"feature pipeline {pipeline} has no config {config!r}; it has: {', '.join(spec.configs)}"
            )
        return dict(spec.configs[config]), config
    if isinstance(config, Mapping):
        full = {**spec.configs["default"], **config}
        return full, full
    raise ConfigError(f"a {pipeline} config is a config name or a dict, got {type(config).__name__}")


def build(pipeline: str, config: Mapping[str, Any], device: str) -> Any:
    from fico_registry.plugin_api.registry import get_registry, resolve_callable

    spec = get_registry().feature_pipeline(pipeline)
    return resolve_callable(spec.factory)(config=dict(config), device=device)


class RunInputs:
    """Image and text feature pipelines of a run (defaults: VGG-19 fc7 and Doc2Vec)."""

    def __init__(
        self,
        *,
        image: str = "vgg19-fc7",
        image_config: str | Mapping[str, Any] = "default",
        text: str = "doc2vec",
        text_config: str | Mapping[str, Any] = "default",
        device: str = "cpu",
        cache: Any = True,
        progress: bool = False,
    ) -> None:
        self.names = {"image": image, "text": text}
        configs = {"image": resolve_config(image, image_config), "text": resolve_config(text, text_config)}
        self.configs = {side: full for side, (full, _) in configs.items()}
        self.config_ids = {side: ident for side, (_, ident) in configs.items()}
        self.device = device
        self.progress = progress
        self.cache = _cache(cache)
        self.pipelines = {side: build(self.names[side], self.configs[side], device) for side in SIDES}
        self.attached = {side: False for side in SIDES}  # did a corpus bring its own features (training)?

    # -- fitting -----------------------------------------------------------------------------------
    def fit(self, train: Any) -> None:
        """Fit what learns from data (Doc2Vec) on the training corpus's captions."""
        for side in SIDES:
            pipeline = self.pipelines[side]
            if hasattr(pipeline, "fit") and side == "text":
                pipeline.fit(list(train.captions), source=f"{train.name}/{train.split}")
            elif hasattr(pipeline, "prepare"):
                pipeline.prepare(train)

    # -- features ----------------------------------------------------------------------------------
    def fingerprint(self, side: str) -> str:
        return self.pipelines[side].fingerprint()

    def features(self, corpus: Any, side: str, *, batch_size: int = 64) -> np.ndarray:
        """(n_items, dim) float32 features of one side of `corpus`, through the cache."""
        if side not in SIDES:
            raise ValueError(f"side must be 'image' or 'text', got {side!r}")
        ref = getattr(corpus, "features", {}).get(self.names[side])
        if ref is not None:  # precomputed features attached to the corpus win, as in fico_registry.models.inputs
            count = corpus.n_images if side == "image" else corpus.n_captions
            if ref.count != count:
                raise DataFormatError(
                    f"{self.names[side]} features have {ref.count} rows for {count} {side}s of {corpus!r}"
                )
            self.attached[side] = True
            return np.array(ref.rows(np.arange(count)), dtype=np.float32)
        pipeline = self.pipelines[side]
        if getattr(pipeline, "model", True) is None:
            raise ConfigError(f"{self.names[side]}: not fitted yet; call fit(train_corpus) or load a saved run first")
        n = corpus.n_images if side == "image" else corpus.n_captions

        def encode_block(start: int, stop: int) -> np.ndarray:
            if side == "image":
                items = [corpus.load_image(i) for i in range(start, stop)]
            else:
                items = [corpus.captions[j] for j in range(start, stop)]
            return pipeline.compute(items).detach().cpu().float().numpy()

        if self.cache is None:
            parts = [encode_block(s, min(n, s + batch_size)) for s in range(0, n, batch_size)]
            return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)
        from fico_registry.plugin_api import embedding_key

        key = embedding_key(  # the key fico_registry.models.pipelines uses: shared with evaluation
            model=f"pipeline:{self.names[side]}",
            side="images" if side == "image" else "texts",
            corpus_hash=corpus.content_hash,
            config=self.config_ids[side],
            fingerprint=self.fingerprint(side),
        )
        array = self.cache.get_or_encode(key, n, encode_block, block_size=batch_size * 4, progress=self.progress)
        return np.array(array, dtype=np.float32)  # a writable copy of the memory-mapped cache entry

    def attach(self, corpus: Any, folder: str | os.PathLike) -> Any:
        """`corpus` with both features attached (files written under `folder`), for evaluate()."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for side in SIDES:
            if self.names[side] in getattr(corpus, "features", {}):
                continue  # the corpus brings its own
            if self.attached[side]:
                raise DataFormatError(
                    f"the model was trained on precomputed {self.names[side]} features attached to its corpus, not on "
                    f"the pipeline's: attach the same kind of features to {corpus!r} (corpus.with_features)"
                )
            array = self.features(corpus, side)
            digest = hashlib.sha256(f"{corpus.content_hash}:{self.fingerprint(side)}".encode()).hexdigest()[:16]
            path = folder / f"{self.names[side]}-{side}-{digest}.npy"
            if not path.is_file():
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                with open(tmp, "wb") as fh:
                    np.save(fh, array, allow_pickle=False)
                os.replace(tmp, path)
            corpus = corpus.with_features(self.names[side], path, modality=side)
        return corpus

    # -- saving ------------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            **{
                side: {
                    "pipeline": self.names[side],
                    "config": self.config_ids[side],
                    "fingerprint": self.fingerprint(side),
                    "attached": self.attached[side],
                }
                for side in SIDES
            },
        }

    def save(self, folder: str | os.PathLike) -> Path:
        """Write inputs.json (and the fitted Doc2Vec model) into `folder`; returns inputs.json's path."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        info = self.describe()
        text = self.pipelines["text"]
        if hasattr(text, "save"):
            target = folder / DOC2VEC_FOLDER
            if not (target / "doc2vec.json").is_file() or _folder_sha(target) != getattr(text, "model_sha256", None):
                text.save(target)
            info["text"]["model_folder"] = DOC2VEC_FOLDER
        path = folder / INPUTS_FILE
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(
        cls, folder: str | os.PathLike, *, device: str = "cpu", cache: Any = True, check: bool = True
    ) -> RunInputs:
        """The pipelines recorded in `folder`/inputs.json, with its Doc2Vec model."""
        info = read_inputs(folder)
        folder = Path(folder)
        text_config = info["text"]["config"]
        model_folder = info["text"].get("model_folder")
        if model_folder:
            base, _ = resolve_config(info["text"]["pipeline"], text_config)
            text_config = {**base, "model": str(folder / model_folder)}
        inputs = cls(
            image=info["image"]["pipeline"],
            image_config=info["image"]["config"],
            text=info["text"]["pipeline"],
            text_config=text_config,
            device=device,
            cache=cache,
        )
        if model_folder:  # cache keys keep naming the recorded config, as during training
            inputs.config_ids["text"] = info["text"]["config"]
        inputs.attached = {side: bool(info[side].get("attached", False)) for side in SIDES}
        if check:
            for side in SIDES:
                recorded, now = info[side]["fingerprint"], inputs.fingerprint(side)
                if recorded != now:
                    raise DataFormatError(
                        f"{folder / INPUTS_FILE}: the {side} pipeline {info[side]['pipeline']} differs from the "
                        f"one the model was trained with (fingerprint {now} here, {recorded} recorded). Supply the "
                        "same weights "
                        "(e.g. vgg19-dcbb9e9d.pth in $FICO_HOME/checkpoints, or its absence for random weights)."
                    )
        return inputs


def read_inputs(folder: str | os.PathLike) -> dict[str, Any]:
    path = Path(folder) / INPUTS_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataFormatError(f"{path} not found: this folder was not written by RunInputs.save") from None
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{path}: not valid JSON ({exc})") from None
    if info.get("format") != FORMAT or not all(isinstance(info.get(side), dict) for side in SIDES):
        raise DataFormatError(f"{path}: not a {FORMAT} file")
    return info


def pipeline_overrides(folder: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """{input name: full pipeline config} recorded beside a checkpoint (the Doc2Vec model path
    made absolute), for encoders to advertise the inputs they were trained on."""
    info = read_inputs(folder)
    out = {}
    for side in SIDES:
        if info[side].get("attached"):
            continue  # trained on features attached to its corpus: no pipeline reproduces them
        config, _ = resolve_config(info[side]["pipeline"], info[side]["config"])
        if side == "text" and info[side].get("model_folder"):
            config["model"] = str((Path(folder) / info[side]["model_folder"]).resolve())
        out[info[side]["pipeline"]] = config
    return out


def recorded_pipelines(folder: str | os.PathLike) -> dict[str, dict[str, Any]] | None:
    """pipeline_overrides of a checkpoint folder that holds an inputs.json (written by `fico train`), else None
    (a checkpoint of the original code: the card's default pipelines apply)."""
    if not (Path(folder) / INPUTS_FILE).is_file():
        return None
    return pipeline_overrides(folder)


def _folder_sha(folder: Path) -> str | None:
    try:
        return json.loads((folder / "doc2vec.json").read_text(encoding="utf-8")).get("content_sha256")
    except (OSError, json.JSONDecodeError):
        return None


def _cache(cache: Any) -> Any:
    from fico_registry.plugin_api import EmbeddingCache

    if cache is True:
        return EmbeddingCache()
    if cache is False or cache is None:
        return None
    if isinstance(cache, EmbeddingCache):
        return cache
    return EmbeddingCache(cache)


def run_inputs(
    train: Any,
    val: Any,
    out: str | os.PathLike,
    image_config: Any,
    text_config: Any,
    *,
    device: str,
    progress: bool,
    world: int,
) -> tuple[RunInputs, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """A training run's feature pipelines and (train images, val images, train texts, val texts) features.

    Under torchrun rank 0 fits Doc2Vec, encodes (filling the embedding cache) and saves the pipelines
    into `out` first; the other ranks then load exactly those pipelines and read the cache, so no two
    ranks fit or write the same files, and every rank checks that it holds rank 0's features.
    """
    from fico_registry.plugin_api.training import barrier, is_main_process

    def encode(inputs: RunInputs) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return (
            inputs.features(train, "image"),
            inputs.features(val, "image"),
            inputs.features(train, "text"),
            inputs.features(val, "text"),
        )

    if is_main_process():
        inputs = RunInputs(image_config=image_config, text_config=text_config, device=device, progress=bool(progress))
        inputs.fit(train)
        arrays = encode(inputs)
        inputs.save(out)
    if world > 1:
        from fico_registry.plugin_api.training import check_same_on_every_rank, quiet  # torch: only when sharded

        barrier()  # rank 0's pipelines and cache entries are complete
        if not is_main_process():
            with quiet("fico_features"):  # rank 0 has reported whatever the pipelines have to say
                inputs = RunInputs.load(out, device=device)
                arrays = encode(inputs)
        check_same_on_every_rank(arrays)
    return inputs, arrays


class CaptionSampler:
    """One text vector per image, as the hashing recipes' datasets have (one tag / Doc2Vec vector per
    image): per epoch one of the image's captions drawn at random ("random"), or the mean of its
    caption vectors ("mean", the same every epoch)."""

    MODES = ("random", "mean")

    def __init__(self, caption_to_image: Any, n_images: int, text_features: np.ndarray, mode: str = "random") -> None:
        if mode not in self.MODES:
            raise ConfigError(f"text_sample must be one of {', '.join(self.MODES)}, got {mode!r}")
        c2i = np.asarray(caption_to_image, dtype=np.int64)
        if len(c2i) != len(text_features):
            raise ConfigError(f"{len(text_features)} text vectors for {len(c2i)} captions")
        self.mode = mode
        self.features = np.asarray(text_features, dtype=np.float32)
        self.order = np.argsort(c2i, kind="stable")  # captions grouped by image
        self.counts = np.bincount(c2i, minlength=n_images)
        if (self.counts == 0).any():
            raise ConfigError(f"{int((self.counts == 0).sum())} training images have no caption")
        self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]])
        if mode == "mean":
            sums = np.zeros((n_images, self.features.shape[1]), dtype=np.float64)
            np.add.at(sums, c2i, self.features)
            self.means = (sums / self.counts[:, None]).astype(np.float32)

    def epoch(self, seed: int, epoch: int) -> np.ndarray:
        """(n_images, dim): the text vector paired with each image in this epoch (seeded by seed, epoch)."""
        if self.mode == "mean":
            return self.means
        draw = np.random.default_rng([int(seed), int(epoch), 7]).random(len(self.counts))
        pick = self.starts + np.minimum((draw * self.counts).astype(np.int64), self.counts - 1)
        return self.features[self.order[pick]]
