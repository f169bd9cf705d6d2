import torch
from fico_blip2.plugin import TINY

from fico_registry import load_model
from fico_registry.plugin_api.testing import sample_batch


def test_eval_mode_no_grad_on_the_requested_device():
    model = load_model("blip2", config="tiny", device="cpu")
    net = model.encoder.core.model
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    assert all(p.device.type == "cpu" for p in net.parameters())
    img = model.encode_images(sample_batch("pixels", 2))
    assert all(v.device.type == "cpu" and not v.requires_grad for v in img.values())


def test_random_init_is_reproducible():
    a = load_model("blip2-nf", config="tiny").encoder.core.model.state_dict()
    b = load_model("blip2-nf", config="tiny").encoder.core.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = load_model("blip2-nf", config={**TINY, "seed": 7}).encoder.core.model.state_dict()
    assert not torch.equal(a["query_tokens"], c["query_tokens"])


def test_bf16_precision_casts_the_vit_only():
    model = load_model("blip2", config={**TINY, "precision": "bf16"}, device="cpu")
    net = model.encoder.core.model
    assert net.vision_model.embeddings.patch_embedding.weight.dtype == torch.bfloat16
    assert net.qformer.layernorm.weight.dtype == torch.float32 and net.query_tokens.dtype == torch.float32
    images, captions = sample_batch("pixels", 2), sample_batch("text", 2)
    img, txt = model.encode_images(images), model.encode_texts(captions)
    assert img["vit_tokens"].dtype == torch.bfloat16 and img["embeds"].dtype == torch.float32
    scores = model.score_pairs(img, txt)
    reference = load_model("blip2", config="tiny", device="cpu")
    ref_img = reference.encode_images(images)
    torch.testing.assert_close(img["embeds"], ref_img["embeds"], atol=0.05, rtol=0)
    assert scores.dtype == torch.float32 and torch.isfinite(scores).all()
