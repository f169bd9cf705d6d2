import subprocess
import sys

from fico_registry import get_model_spec
from fico_registry.plugin_api.testing import check_model


def test_blip2_nf_conforms():
    check_model("blip2-nf")


def test_blip2_conforms():
    model = check_model("blip2")
    assert model.encoder.dim == 256


def test_blip2_conforms_with_lavis_checkpoint(lavis_pth):
    check_model("blip2", checkpoint=lavis_pth)


def test_blip2_nf_conforms_with_transformers_folder(hf_folder):
    check_model("blip2-nf", checkpoint=hf_folder)


def test_cards():
    full, nf = get_model_spec("blip2"), get_model_spec("blip2-nf")
    assert str(full.output) == "similarity" and str(full.query_time_attention) == "fusion-rerank"
    assert full.measure == "maxsim" and full.rerank_k == 128 and full.dim == 256
    assert str(nf.output) == "continuous" and nf.measure == "maxsim" and nf.dim == 256
    assert full.distribution == "fico-blip2"
    assert {"coco", "lavis-coco"} <= set(full.checkpoints)


def test_listing_imports_nothing_heavy():
    code = "import sys, fico_blip2.plugin; print(','.join(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
