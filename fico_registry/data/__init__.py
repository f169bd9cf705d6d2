"""Corpora: ground truth, dataset loaders, labels, precomputed features, synthetic data, caches."""

from __future__ import annotations

from .corpus import Corpus, FeatureRef, Repeated
from .load import load_dataset

__all__ = ["Corpus", "FeatureRef", "Repeated", "load_dataset"]
