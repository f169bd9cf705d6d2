"""The region-feature reader the SCAN / IMRAM / VSRN / ADV recipes share."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fico_registry.errors import MissingInputError
from fico_registry.plugin_api.region_features import RegionFeatures


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from fico_registry.data import synthetic

    return synthetic(n_images=6, split="train", root=tmp_path_factory.mktemp("synthetic"))


@pytest.mark.parametrize("in_memory_bytes", [0, 1 << 40])
def test_rows_are_the_features_of_the_asked_images(corpus, in_memory_bytes):
    ref = corpus.features["regions"]
    reader = RegionFeatures(corpus, ref.shape[-1], model="m", in_memory_bytes=in_memory_bytes)
    assert (reader.array is None) == (in_memory_bytes == 0)
    items = np.array([4, 0, 4])
    got = reader(items)
    assert got.dtype == torch.float32 and got.shape == (3, *ref.shape[1:])
    assert np.array_equal(got.numpy(), np.asarray(ref.rows(np.arange(6)), dtype=np.float32)[items])


def test_missing_or_misshapen_regions_say_what_to_attach(corpus):
    with pytest.raises(MissingInputError, match="expected \\(6, regions, 7\\)"):
        RegionFeatures(corpus, 7, model="m")
    bare = type("Bare", (), {"features": {}, "n_images": 6, "__repr__": lambda self: "Corpus(bare)"})()
    with pytest.raises(MissingInputError, match="Corpus\\(bare\\) has no 'regions' features: scan trains on"):
        RegionFeatures(bare, 2048, model="scan")
