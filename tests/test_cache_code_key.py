"""The embedding cache key covers the model's code: distribution version, and for editable or
local-path installs a hash of the package's source; a cache hit is announced on stderr."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap

import pytest

from fico_registry.data import EmbeddingCache
from fico_registry.data.synthetic import synthetic
from fico_registry.models import plugin_source

MODEL_PY = """
import numpy as np
import torch

SCALE = {scale}


class Encoder:
    dim = 4

    def encode_images(self, batch):
        pixels = [np.asarray(img.resize((2, 2)).convert("L"), dtype=np.float32).reshape(4) for img in batch]
        return torch.from_numpy(np.stack(pixels)) + SCALE

    def encode_texts(self, batch):
        return torch.tensor([[len(t), t.count(" "), t.count("e"), SCALE] for t in batch], dtype=torch.float32)


def build(*, spec, config, checkpoint, device):
    return Encoder()
"""

PLUGIN_PY = """
from fico_registry import ModelSpec, hookimpl


@hookimpl
def fico_models(register):
    register(ModelSpec(
        name="fakeplug-dual", family="fg", output="continuous", dim=4, measure="cosine",
        image_input="pixels", text_input="text", factory="fakeplug.model:build", distribution="fakeplug",
        configs={"default": {}, "tiny": {}},
    ))
"""


def _install(root, version, direct_url):
    """A dist-info folder for distribution 'fakeplug' (what pip writes), replacing any earlier one."""
    site = root / "site"
    for old in site.glob("fakeplug-*.dist-info"):
        for file in old.iterdir():
            file.unlink()
        old.rmdir()
    info = site / f"fakeplug-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fakeplug\nVersion: {version}\n")
    if direct_url is not None:
        (info / "direct_url.json").write_text(json.dumps(direct_url))
    importlib.invalidate_caches()  # importlib.metadata caches path listings


def _write_source(root, scale):
    package = root / "src" / "fakeplug"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "plugin.py").write_text(textwrap.dedent(PLUGIN_PY))
    (package / "model.py").write_text(MODEL_PY.format(scale=scale))
    for name in [m for m in sys.modules if m == "fakeplug" or m.startswith("fakeplug.")]:
        del sys.modules[name]  # a new process would import the edited code
    importlib.invalidate_caches()


@pytest.fixture
def fake_plugin(tmp_path, monkeypatch):
    _write_source(tmp_path, 1.0)
    _install(tmp_path, "0.1", {"url": (tmp_path / "src").as_uri(), "dir_info": {"editable": True}})
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    yield tmp_path
    for name in [m for m in sys.modules if m == "fakeplug" or m.startswith("fakeplug.")]:
        del sys.modules[name]


def _identity():
    return plugin_source.code_identity("fakeplug", "fakeplug.model:build")


def test_editing_an_editable_plugin_changes_the_key(fake_plugin):
    before = _identity()
    assert before["plugin_version"] == "0.1" and len(before["plugin_source"]) == 64
    assert _identity() == before  # stable while nothing changes
    _write_source(fake_plugin, 2.0)
    after = _identity()
    assert after["plugin_source"] != before["plugin_source"]
    (fake_plugin / "src" / "fakeplug" / "helpers.py").write_text("X = 1\n")  # a new file counts too
    assert _identity()["plugin_source"] != after["plugin_source"]


def test_a_version_bump_changes_the_key(fake_plugin):
    before = _identity()
    _install(fake_plugin, "0.2", {"url": (fake_plugin / "src").as_uri(), "dir_info": {"editable": True}})
    after = _identity()
    assert after["plugin_version"] == "0.2" and before["plugin_version"] == "0.1"
    assert after["plugin_source"] == before["plugin_source"]


def test_index_installs_are_keyed_by_version_only(fake_plugin):
    _install(fake_plugin, "0.1", None)  # no direct_url.json: installed from an index
    assert _identity() == {"plugin_version": "0.1", "plugin_source": None}
    _install(fake_plugin, "0.1", {"url": "https://example.org/fakeplug-0.1.tar.gz", "archive_info": {}})
    assert _identity()["plugin_source"] is None
    _install(fake_plugin, "0.1", {"url": (fake_plugin / "src").as_uri(), "dir_info": {}})  # pip install ./path
    assert _identity()["plugin_source"] is not None


def test_code_without_an_installed_distribution_is_hashed(fake_plugin):
    assert plugin_source.installed_from_source(None)
    assert plugin_source.code_identity(None, "fakeplug.model:build")["plugin_source"] == _identity()["plugin_source"]


def test_evaluate_re_encodes_after_an_edit_and_announces_cache_hits(fake_plugin, tmp_path, capsys):
    import fico_registry as fico
    from fico_registry.plugin_api.registry import Registry, reset_registry

    corpus = synthetic(n_images=6, captions_per_image=2, root=tmp_path / "corpus", regions=False, image_size=32)
    cache = EmbeddingCache(tmp_path / "cache")

    def run():
        reset_registry(Registry(entry_points=False, plugins=[importlib.import_module("fakeplug.plugin")]))
        model = fico.load_model("fakeplug-dual", config="tiny", device="cpu")
        report = fico.evaluate(model, corpus, cache=cache, device="cpu", progress=None)
        return report.costs["encode"], capsys.readouterr().err

    try:
        first, err = run()
        assert not first["images"]["from_cache"] and "from cache" not in err
        second, err = run()
        assert second["images"]["from_cache"] and second["texts"]["from_cache"]
        assert "6 image embeddings from cache (key fakeplug-dual-images-" in err
        assert "12 text embeddings from cache (key fakeplug-dual-texts-" in err
        _write_source(fake_plugin, 3.0)
        third, err = run()
        assert not third["images"]["from_cache"] and not third["texts"]["from_cache"]
        assert "from cache" not in err
    finally:
        reset_registry()


def test_no_notice_when_progress_is_off(tmp_path, capsys):
    import fico_registry as fico

    corpus = synthetic(n_images=4, captions_per_image=1, root=tmp_path / "corpus", regions=False, image_size=32)
    model = fico.load_model("reference-dual", config="tiny", device="cpu")
    for _ in range(2):
        report = fico.evaluate(model, corpus, cache=tmp_path / "cache", device="cpu", progress=False)
    assert report.costs["encode"]["images"]["from_cache"]
    assert "from cache" not in capsys.readouterr().err
