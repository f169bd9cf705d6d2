"""`fico plugin new`: write a working plugin package (pyproject, plugin.py, model.py, tests, README).

The generated package installs and passes `fico check` and its own tests as written: the models
are random projections, small and deterministic, that an author replaces with the real network.
plugins/_template in this repository is this scaffold's output for `fico plugin new example`
(a test keeps them identical).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from fico_registry.errors import OptionError

# The only core modules generated code imports: the plugin API and the conformance kit. Every
# template below goes through these two names, so moving the API is a one-line change here.
API_MODULE = "fico_registry.plugin_api"
TESTING_MODULE = "fico_registry.plugin_api.testing"

KINDS = ("continuous", "binary", "similarity")
_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
_SUFFIX = {"continuous": "dual", "binary": "hash", "similarity": "xattn"}


@dataclass(frozen=True)
class PluginNames:
    """How one NAME spreads over a package: dist fico-NAME, package fico_NAME, entry point NAME."""

    entry_point: str
    distribution: str
    package: str
    model: str

    @classmethod
    def of(cls, name: str, kind: str) -> PluginNames:
        if not _NAME.match(name):
            raise OptionError(
                f"plugin name {name!r} must be lower-case letters and digits, words joined by '-' (e.g. acme)"
            )
        if kind not in KINDS:
            raise OptionError(f"--kind must be one of {', '.join(KINDS)}; got {kind!r}")
        entry = name.removeprefix("fico-") or name
        dist = f"fico-{entry}"
        return cls(entry, dist, dist.replace("-", "_"), f"{entry}-{_SUFFIX[kind]}")


def core_requirement() -> str:
    """The core dependency range a plugin declares: this minor series (the plugin API is stable within it)."""
    from fico_registry import __version__

    major, minor = (int(part) for part in __version__.split(".")[:2])
    return f"fico-registry>={major}.{minor},<{major}.{minor + 1}"


def render(name: str, kind: str = "continuous") -> dict[str, str]:
    """Relative path -> file content of the plugin package for NAME."""
    n = PluginNames.of(name, kind)
    fields = {
        "api": API_MODULE,
        "testing": TESTING_MODULE,
        "entry": n.entry_point,
        "dist": n.distribution,
        "package": n.package,
        "model": n.model,
        "kind": kind,
        "core": core_requirement(),
        "card": _CARDS[kind].format(package=n.package, model=n.model),
        "encoder": _ENCODERS[kind],
    }
    files = {
        "pyproject.toml": _PYPROJECT,
        "README.md": _README,
        f"src/{n.package}/__init__.py": '"""{dist}: a fico-registry model plugin."""\n',
        f"src/{n.package}/plugin.py": _PLUGIN,
        f"src/{n.package}/model.py": _MODEL,
        f"tests/test_{n.package}.py": _TESTS,
    }
    return {path: text.format(**fields) for path, text in files.items()}


def write_plugin(name: str, target: Path, kind: str = "continuous") -> list[Path]:
    """Write the package into `target` (a new or empty folder); returns the files written."""
    files = render(name, kind)
    target = Path(target)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise OptionError(f"{target} already exists and is not empty: choose another folder (--path)")
    written = []
    for relative, text in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


_PYPROJECT = """\
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "A fico-registry model plugin ({kind} output)."
requires-python = ">=3.10"
license = "MIT"
# The plugin API is stable within a minor series of the core: pin the series you tested with.
dependencies = ["{core}", "torch"]

# The registry discovers plugins through this entry-point group. The module named here is
# imported whenever models are listed: keep it tiny (no torch, no model code).
[project.entry-points.fico_registry]
{entry} = "{package}.plugin"

[tool.setuptools.packages.find]
where = ["src"]
"""

_README = """\
# {dist}

A fico-registry plugin registering the model `{model}` ({kind} output). The model is a
placeholder (random projections): replace `src/{package}/model.py` with the real network and the
card in `src/{package}/plugin.py` with its facts. The walk-through is the core's `docs/plugins.md`.

    pip install -e .
    fico plugins                 # {entry}: loaded cleanly?
    fico check {entry}           # import time, hooks, factories, names, and the model conformance kit
    pytest                       # the same checks, plus an evaluation on a synthetic corpus
    fico evaluate {model} --config tiny --dataset synthetic
"""

_PLUGIN = """\
\"\"\"Registration only: imported whenever models are listed, so it imports nothing heavy.\"\"\"

from {api} import Family, ModelSpec, OutputKind, hookimpl


@hookimpl
def fico_models(register):
    register(
        ModelSpec(
{card}
            image_input="pixels",
            text_input="text",
            configs={{"default": {{"width": 32, "image_size": 32}}, "tiny": {{"width": 8, "image_size": 16}}}},
            paper="(your paper)",
            url="(your repository)",
            license="MIT",
        )
    )
"""

_CARDS = {
    "continuous": """\
            name="{model}",
            family=Family.FG,
            output=OutputKind.CONTINUOUS,
            dim=32,  # the width of the default config
            measure="cosine",
            factory="{package}.model:build",  # imported only when the model is loaded""",
    "binary": """\
            name="{model}",
            family=Family.CG,
            output=OutputKind.BINARY,
            bits=32,  # the code length of the default config
            factory="{package}.model:build",  # imported only when the model is loaded""",
    "similarity": """\
            name="{model}",
            family=Family.FG,
            output=OutputKind.SIMILARITY,
            query_time_attention="cross-attention",  # every (image, text) pair scored by score()
            factory="{package}.model:build",  # imported only when the model is loaded""",
}

_MODEL = """\
\"\"\"The model: imported only by load_model(). Replace the random projections with your network.\"\"\"

from __future__ import annotations

import torch
import torch.nn.functional as F


class _Projections:
    \"\"\"Deterministic random weights; a real model builds its network and loads the checkpoint.\"\"\"

    def __init__(self, width: int, image_size: int, device: str) -> None:
        self.width, self.image_size, self.device = width, image_size, device
        generator = torch.Generator().manual_seed(0)
        self.image_proj = torch.randn(3 * 8 * 8, width, generator=generator).to(device)
        self.text_proj = torch.randn(256, width, generator=generator).to(device)

    def preprocess_image(self, image) -> torch.Tensor:
        \"\"\"PIL image -> (3, H, W) float tensor. Evaluation may call it in threads and stack the results.\"\"\"
        image = image.convert("RGB").resize((self.image_size, self.image_size))
        data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
        return data.view(self.image_size, self.image_size, 3).permute(2, 0, 1).float() / 255

    def pixels(self, batch) -> torch.Tensor:
        \"\"\"A list of PIL images, or the stacked (B, 3, H, W) tensor of preprocess_image outputs.\"\"\"
        if isinstance(batch, torch.Tensor):
            return batch.to(self.device)
        return torch.stack([self.preprocess_image(image) for image in batch]).to(self.device)

    def patches(self, batch) -> torch.Tensor:
        \"\"\"(B, 4, width): one feature per image quadrant.\"\"\"
        pixels = F.adaptive_avg_pool2d(self.pixels(batch), 16)
        quads = pixels.unfold(2, 8, 8).unfold(3, 8, 8)  # (B, 3, 2, 2, 8, 8)
        return quads.permute(0, 2, 3, 1, 4, 5).flatten(3).flatten(1, 2) @ self.image_proj

    def words(self, texts: list[str], max_words: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
        \"\"\"(B, max_words, width) byte-count features per word, and the (B, max_words) mask of real words.\"\"\"
        counts = torch.zeros(len(texts), max_words, 256)
        mask = torch.zeros(len(texts), max_words)
        for row, text in enumerate(texts):
            for col, word in enumerate(text.lower().split()[:max_words]):
                mask[row, col] = 1
                for byte in word.encode():
                    counts[row, col, byte] += 1
        return (counts @ self.text_proj).to(self.device), mask.to(self.device)

{encoder}
"""

_ENCODERS = {
    "continuous": """\
class Encoder(_Projections):
    \"\"\"Continuous dual encoder: (B, dim) embeddings compared by cosine.\"\"\"

    @property
    def dim(self) -> int:  # the width of this config (the card's dim is the default config's)
        return self.width

    @torch.no_grad()
    def encode_images(self, batch) -> torch.Tensor:
        return F.normalize(self.patches(batch).mean(1), dim=-1)

    @torch.no_grad()
    def encode_texts(self, batch: list[str]) -> torch.Tensor:
        words, mask = self.words(batch)
        return F.normalize((words * mask[..., None]).sum(1), dim=-1)


def build(*, spec, config, checkpoint=None, device="cpu"):
    \"\"\"The factory the card names: called as build(spec=, config=, checkpoint=, device=).\"\"\"
    if checkpoint is not None:
        raise ValueError(f"{spec.name} has no checkpoints yet")
    return Encoder(config["width"], config["image_size"], device)""",
    "binary": """\
class Encoder(_Projections):
    \"\"\"Hashing model: (B, bits) codes in {-1, +1}, compared by Hamming distance.\"\"\"

    @property
    def bits(self) -> int:  # the code length of this config (the card's bits is the default config's)
        return self.width

    @staticmethod
    def _sign(x: torch.Tensor) -> torch.Tensor:
        return torch.where(x >= 0, 1.0, -1.0)  # torch.sign(0) is 0, which is not a binary code

    @torch.no_grad()
    def encode_images(self, batch) -> torch.Tensor:
        return self._sign(self.patches(batch).mean(1))

    @torch.no_grad()
    def encode_texts(self, batch: list[str]) -> torch.Tensor:
        words, mask = self.words(batch)
        return self._sign((words * mask[..., None]).sum(1))


def build(*, spec, config, checkpoint=None, device="cpu"):
    \"\"\"The factory the card names: called as build(spec=, config=, checkpoint=, device=).\"\"\"
    if checkpoint is not None:
        raise ValueError(f"{spec.name} has no checkpoints yet")
    return Encoder(config["width"], config["image_size"], device)""",
    "similarity": """\
class Encoder(_Projections):
    \"\"\"Cross-attention model: keeps region and word features, scores every pair at query time.\"\"\"

    @torch.no_grad()
    def encode_images(self, batch) -> torch.Tensor:
        return F.normalize(self.patches(batch), dim=-1)  # (B, 4 regions, width)

    @torch.no_grad()
    def encode_texts(self, batch: list[str]) -> dict[str, torch.Tensor]:
        words, mask = self.words(batch)  # fixed max_words, so batches concatenate
        return {"words": F.normalize(words, dim=-1), "mask": mask}

    @torch.no_grad()
    def score(self, images: torch.Tensor, texts: dict[str, torch.Tensor]) -> torch.Tensor:
        \"\"\"(n_images, n_texts): each word's best region, averaged over the caption's words.\"\"\"
        sims = torch.einsum("ird,jtd->ijrt", images, texts["words"]).amax(dim=2)  # (i, j, t)
        mask = texts["mask"][None]
        return (sims * mask).sum(-1) / mask.sum(-1).clamp(min=1)


def build(*, spec, config, checkpoint=None, device="cpu"):
    \"\"\"The factory the card names: called as build(spec=, config=, checkpoint=, device=).\"\"\"
    if checkpoint is not None:
        raise ValueError(f"{spec.name} has no checkpoints yet")
    return Encoder(config["width"], config["image_size"], device)""",
}

_TESTS = """\
\"\"\"check_plugin + check_model for every model of {dist} (what `fico check {entry}` runs), and one evaluation.\"\"\"

import fico_registry as fico
from {testing} import plugin_tests

test_plugin = plugin_tests("{dist}")


def test_evaluates_on_a_synthetic_corpus(tmp_path):
    corpus = fico.data.synthetic(n_images=8, root=tmp_path)
    report = fico.evaluate(fico.load_model("{dist}:{model}", config="tiny"), corpus, cache=False)
    assert 0 <= report.instance["i2t"]["R@1"] <= 1
"""
