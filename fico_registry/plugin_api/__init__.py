"""The plugin API: the only core modules a plugin imports, with a stability promise.

A plugin (a pip distribution with an entry point in the group `fico_registry`) imports from here,
from `fico_registry.errors`, and from the top-level `fico_registry` names (load_model, evaluate, ...):

    from fico_registry.plugin_api import ModelSpec, Family, OutputKind, hookimpl       # cards + hooks
    from fico_registry.plugin_api import TrainerSpec, trainer_hook                     # fico train recipes
    from fico_registry.plugin_api import load_torch_checkpoint, strict_load_state_dict # helper kit
    from fico_registry.plugin_api.testing import check_model                          # conformance kit
    from fico_registry.plugin_api.training import Checkpointer, autocast              # training kit

Stability: names listed in `__all__` here and in the documented submodules (testing, training) keep
their meaning within a minor series of fico-registry: depend on `fico-registry>=0.1,<0.2`. Anything
else in the core may move without notice. docs/plugin-api.md is the reference page.

This package may import only fico_registry.errors and its own modules at import time; everything
heavier (torch, the evaluator, the data layer) is loaded on first use of a name that needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fico_registry.plugin_api._lazy import lazy_getattr
from fico_registry.plugin_api.cards import (
    Checkpoint,
    DatasetSpec,
    Encoder,
    Family,
    FeatureSpec,
    Input,
    ModelFactory,
    ModelSpec,
    OutputKind,
    PipelineEncoder,
    PreprocessingEncoder,
    QueryTimeAttention,
    Reranker,
    Scorer,
    TrainerSpec,
)
from fico_registry.plugin_api.hooks import trainer_hook
from fico_registry.plugin_api.hookspecs import hookimpl
from fico_registry.plugin_api.registry import (
    get_dataset_spec,
    get_model_spec,
    get_registry,
    get_trainer_spec,
    list_models,
    resolve_callable,
)

# helper-kit name -> module that defines it; imported on first use (PEP 562)
_LAZY = {
    # safe checkpoint reading (never unpickles arbitrary objects)
    "load_torch_checkpoint": "fico_registry.plugin_api.checkpoints",
    "strict_load_state_dict": "fico_registry.plugin_api.checkpoints",
    "saved_options": "fico_registry.plugin_api.checkpoints",
    "state_dict_mismatches": "fico_registry.plugin_api.checkpoints",
    "restricted_unpickle": "fico_registry.plugin_api.checkpoints",
    # caption tokenisation and word vocabularies (SCAN / IMRAM / VSRN style)
    "CaptionTokenizer": "fico_registry.plugin_api.captions",
    "Vocabulary": "fico_registry.plugin_api.captions",
    "tokenize_caption": "fico_registry.plugin_api.captions",
    "encode_captions": "fico_registry.plugin_api.captions",
    "build_vocab": "fico_registry.plugin_api.captions",
    "save_vocab_json": "fico_registry.plugin_api.captions",
    "load_vocab": "fico_registry.plugin_api.captions",
    "find_vocab_file": "fico_registry.plugin_api.captions",
    # BERT text sides (ADV / BLIP-2 / X-VLM): BERT-base's sizes, WordPiece vocabularies
    "BERT_BASE_UNCASED": "fico_registry.plugin_api.bert",
    "read_bert_vocab": "fico_registry.plugin_api.bert",
    "bert_tokenizer": "fico_registry.plugin_api.bert",
    "tiny_bert_char_vocab": "fico_registry.plugin_api.bert",
    # original run folders: the checkpoint in a folder, side files its options name
    "checkpoint_in_run_folder": "fico_registry.plugin_api.run_folders",
    "find_original_file": "fico_registry.plugin_api.run_folders",
    "missing_original_file": "fico_registry.plugin_api.run_folders",
    # inputs: the square-resize image preprocessing of BLIP-2 / BEiT-3 / X-VLM, region features
    "ImagePreprocessor": "fico_registry.plugin_api.image_preprocess",
    "encode_pixels": "fico_registry.plugin_api.image_preprocess",
    "RegionFeatures": "fico_registry.plugin_api.region_features",
    "checkpoints_in_folder": "fico_registry.plugin_api.run_folders",
    # environment
    "ensure_torchvision": "fico_registry.plugin_api.compat",
    "fico_home": "fico_registry.models.loading",
    "sha256_of": "fico_registry.models.loading",
    "load_dataset": "fico_registry.data",
    # feature-pipeline plugins: the embedding cache evaluation itself uses
    "EmbeddingCache": "fico_registry.data.cache",
    "embedding_key": "fico_registry.data.cache",
}

__all__ = [
    "Checkpoint",
    "DatasetSpec",
    "Encoder",
    "Family",
    "FeatureSpec",
    "Input",
    "ModelFactory",
    "ModelSpec",
    "OutputKind",
    "PipelineEncoder",
    "PreprocessingEncoder",
    "QueryTimeAttention",
    "Reranker",
    "Scorer",
    "TrainerSpec",
    "get_dataset_spec",
    "get_model_spec",
    "get_registry",
    "get_trainer_spec",
    "hookimpl",
    "list_models",
    "resolve_callable",
    "trainer_hook",
    *_LAZY,
]


__getattr__ = lazy_getattr(__name__, globals(), _LAZY)


if TYPE_CHECKING:  # pragma: no cover
    from fico_registry.data import load_dataset as load_dataset
    from fico_registry.data.cache import EmbeddingCache as EmbeddingCache
    from fico_registry.data.cache import embedding_key as embedding_key
    from fico_registry.models.loading import fico_home as fico_home
    from fico_registry.models.loading import sha256_of as sha256_of
    from fico_registry.plugin_api.bert import BERT_BASE_UNCASED as BERT_BASE_UNCASED
    from fico_registry.plugin_api.bert import bert_tokenizer as bert_tokenizer
    from fico_registry.plugin_api.bert import read_bert_vocab as read_bert_vocab
    from fico_registry.plugin_api.bert import tiny_bert_char_vocab as tiny_bert_char_vocab
    from fico_registry.plugin_api.captions import CaptionTokenizer as CaptionTokenizer
    from fico_registry.plugin_api.captions import Vocabulary as Vocabulary
    from fico_registry.plugin_api.captions import build_vocab as build_vocab
    from fico_registry.plugin_api.captions import encode_captions as encode_captions
    from fico_registry.plugin_api.captions import find_vocab_file as find_vocab_file
    from fico_registry.plugin_api.captions import load_vocab as load_vocab
    from fico_registry.plugin_api.captions import save_vocab_json as save_vocab_json
    from fico_registry.plugin_api.captions import tokenize_caption as tokenize_caption
    from fico_registry.plugin_api.checkpoints import load_torch_checkpoint as load_torch_checkpoint
    from fico_registry.plugin_api.checkpoints import restricted_unpickle as restricted_unpickle
    from fico_registry.plugin_api.checkpoints import saved_options as saved_options
    from fico_registry.plugin_api.checkpoints import state_dict_mismatches as state_dict_mismatches
    from fico_registry.plugin_api.checkpoints import strict_load_state_dict as strict_load_state_dict
    from fico_registry.plugin_api.compat import ensure_torchvision as ensure_torchvision
    from fico_registry.plugin_api.image_preprocess import ImagePreprocessor as ImagePreprocessor
    from fico_registry.plugin_api.image_preprocess import encode_pixels as encode_pixels
    from fico_registry.plugin_api.region_features import RegionFeatures as RegionFeatures
    from fico_registry.plugin_api.run_folders import checkpoint_in_run_folder as checkpoint_in_run_folder
    from fico_registry.plugin_api.run_folders import checkpoints_in_folder as checkpoints_in_folder
    from fico_registry.plugin_api.run_folders import find_original_file as find_original_file
    from fico_registry.plugin_api.run_folders import missing_original_file as missing_original_file
