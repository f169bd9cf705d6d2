import subprocess
import sys

from fico_registry import get_model_spec
from fico_registry.plugin_api.testing import check_model, sample_batch


def test_xvlm_nf_conforms():
    model = check_model("xvlm-nf")
    assert model.encoder.dim == 8  # the tiny config's embed_dim


def test_xvlm_conforms():
    model = check_model("xvlm")
    images = model.encode_images(sample_batch("pixels", 2))
    assert tuple(images["image_states"].shape) == (2, 1 + 4 * 4, 16)  # 64 px / patch 4 / 2^2 = 4x4 tokens + CLS


def test_xvlm_conforms_with_original_checkpoint(retrieval_pth):
    check_model("xvlm", checkpoint=retrieval_pth)


def test_xvlm_nf_conforms_with_raw_state_dict(raw_th):
    check_model("xvlm-nf", checkpoint=raw_th)


def test_cards():
    full, nf = get_model_spec("xvlm"), get_model_spec("xvlm-nf")
    assert str(full.output) == "similarity" and str(full.query_time_attention) == "fusion-rerank"
    assert full.measure == "cosine" and full.rerank_k == 128 and full.dim == 256
    assert str(nf.output) == "continuous" and nf.measure == "cosine" and nf.dim == 256
    assert full.distribution == nf.distribution == "fico-xvlm"
    assert full.configs["coco"]["rerank_k"] == 256 and full.configs["flickr30k"]["rerank_k"] == 128
    assert {"flickr30k", "coco", "4m-pretrain"} <= set(full.checkpoints)


def test_listing_imports_nothing_heavy():
    code = (
        "import sys, fico_xvlm.plugin; "
        "print(','.join(m for m in ('torch', 'timm', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
