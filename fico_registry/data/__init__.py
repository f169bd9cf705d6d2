"""Corpora: ground truth, dataset loaders, labels, precomputed features, synthetic data, caches.

Importing this package loads numpy only; torch, PIL, scipy and h5py load inside the functions
that need them.

Note: the function `synthetic` shadows the module of the same name as an attribute of this
package; reach the module with `from fico_registry.data.synthetic import ...` (or importlib),
not `import fico_registry.data.synthetic as m`.
"""

from __future__ import annotations

from fico_registry.data.cache import CacheIncompleteError, CacheStatus, EmbeddingCache, embedding_key
from fico_registry.data.coco_captions import coco_caption_ids
from fico_registry.data.corpus import Corpus, FeatureRef, Repeated
from fico_registry.data.eccv_caption import eccv_caption_judgments
from fico_registry.data.features import (
    align_by_ids,
    attach_region_features,
    file_fingerprint,
    find_region_features,
    open_feature_array,
    read_matrix,
    region_rows_index,
)
from fico_registry.data.judgments import Judgments, JudgmentSet, as_judgment_sets
from fico_registry.data.karpathy import load_coco, load_flickr8k, load_flickr30k, load_karpathy
from fico_registry.data.labels import (
    COCO_CATEGORY_NAMES,
    coco_category_labels,
    label_matrix_for_corpus,
    load_nus_wide,
    read_label_matrix,
)
from fico_registry.data.load import load_dataset
from fico_registry.data.synthetic import synthetic

__all__ = [
    "COCO_CATEGORY_NAMES",
    "CacheIncompleteError",
    "CacheStatus",
    "Corpus",
    "EmbeddingCache",
    "FeatureRef",
    "JudgmentSet",
    "Judgments",
    "Repeated",
    "align_by_ids",
    "as_judgment_sets",
    "attach_region_features",
    "coco_caption_ids",
    "coco_category_labels",
    "eccv_caption_judgments",
    "embedding_key",
    "file_fingerprint",
    "find_region_features",
    "label_matrix_for_corpus",
    "load_coco",
    "load_dataset",
    "load_flickr8k",
    "load_flickr30k",
    "load_karpathy",
    "load_nus_wide",
    "open_feature_array",
    "read_label_matrix",
    "read_matrix",
    "region_rows_index",
    "synthetic",
]
