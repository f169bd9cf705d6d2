"""Registration only: imported at discovery time, so it imports nothing heavy."""

from fico_registry import Family, ModelSpec, OutputKind, hookimpl
from fico_registry.plugin_api import TrainerSpec, trainer_hook
from fico_registry.plugin_api.bert import BERT_BASE_UNCASED

PAPER = (
    "Li Y., Mu Y., Zhuang N., et al.: Efficient fine-grained visual-text search using adversarially-learned hash "
    "codes. IEEE ICME 2021, doi:10.1109/ICME51207.2021.9428271"
)
URL = "https://github.com/muziyongshixin/adv_cross_modal_hashing"

# bert_config.json of Google's BERT-base uncased (L-12 H-768 A-12), which ADV keeps frozen.
BERT_BASE = dict(BERT_BASE_UNCASED)
T_CFG = {"hidden_size": 256, "num_attention_heads": 16, "intermediate_size": 2048}  # the repo's t_cfg.json
# Tiny versions for tests; vocab_size is the size of the built-in test vocabulary.
TINY_BERT = {
    "vocab_size": 109,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 64,
    "type_vocab_size": 2,
}
TINY_T_CFG = {"hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32}


def _configs(final_dims: int, tiny_dims: int) -> dict:
    default = {
        "final_dims": final_dims,
        "img_dim": 2048,
        "max_words": 32,
        "txt_stru": "cnn",
        "cnn_channels": 512,
        "trans_cfg": T_CFG,
        "bert_config": BERT_BASE,
        "vocab_file": None,  # BERT-base uncased vocab.txt; by default looked up next to the checkpoint
        "do_lower_case": True,
    }
    tiny = {
        **default,
        "final_dims": tiny_dims,
        "cnn_channels": 8,
        "trans_cfg": TINY_T_CFG,
        "bert_config": TINY_BERT,
        "vocab_file": "builtin:tiny",
    }
    return {"default": default, "tiny": tiny}


def _region_model(bits: int, tiny_bits: int, setting: str) -> ModelSpec:
    return ModelSpec(
        name=f"adv-{bits}",
        family=Family.CG,
        output=OutputKind.BINARY,
        bits=bits,
        image_input="regions",
        text_input="text",
        factory="fico_adv.model:build",
        configs=_configs(bits, tiny_bits),
        paper=PAPER,
        url=URL,
        license="MIT",
        description=(
            f"ADV re-rank model (ReRankSAEM, final_dims={bits}): 36x2048 bottom-up regions through one "
            "transformer layer, captions through BERT-base + TextCNN; {-1,+1} codes. "
            f"FiCo-ITR's {setting} setting. No public weights: load a model_best.pth.tar from the original "
            "train_reranking.py, with BERT's vocab.txt beside it."
        ),
        extra={"fico_itr_key": f"adv({bits}bit)", "datasets_reported": ["f30k"]},
    )


def _screen_configs() -> dict:
    default = {
        "final_dims": 256,  # train_screen.py / README test command
        "image_backbone": "resnet50",
        "image_size": 256,
        "resnet_block": "bottleneck",
        "resnet_layers": [3, 4, 6, 3],
        "max_words": 32,
        "txt_stru": "cnn",
        "cnn_channels": 512,
        "bert_config": BERT_BASE,
        "vocab_file": None,
        "do_lower_case": True,
    }
    tiny = {
        **default,
        "final_dims": 16,
        "image_size": 32,
        "resnet_block": "basic",
        "resnet_layers": [1, 1, 1, 1],
        "cnn_channels": 8,
        "bert_config": TINY_BERT,
        "vocab_file": "builtin:tiny",
    }
    return {"default": default, "tiny": tiny}


def _screen_model() -> ModelSpec:
    return ModelSpec(
        name="adv-screen",
        family=Family.CG,
        output=OutputKind.BINARY,
        bits=256,
        image_input="pixels",
        text_input="text",
        factory="fico_adv.screen:build",
        configs=_screen_configs(),
        paper=PAPER,
        url=URL,
        license="MIT",
        description=(
            "ADV screen model (BinaryBaseModel, final_dims=256): ResNet-50 on 256x256 pixels, captions through "
            "BERT-base + TextCNN; {-1,+1} codes for first-stage screening. Not part of FiCo-ITR. No public "
            "weights: load a checkpoint from the original train_screen.py, with BERT's vocab.txt beside it."
        ),
        extra={"datasets_reported": []},
    )


@hookimpl
def fico_models(register):
    register(_region_model(2048, 16, "fine-grained (2048-bit)"))
    register(_region_model(64, 64, "coarse-grained (64-bit)"))
    register(_screen_model())


# -- training recipe (fico train adv-64 / adv-2048): fico_adv.train, imported only when training --------
# Option names and values: train_reranking.py's argparse defaults and the constants of
# reranking_model.ReRankSAEM.forward_loss (alpha, beta, gamma, theta and the 0.01 regulariser).
TRAIN_DEFAULTS = {
    "epochs": 100,  # --num_epochs
    "batch_size": 128,
    "learning_rate": 0.0001,
    "lr_update": 10,  # learning rate x 0.1 every lr_update epochs
    "grad_clip": 2.0,
    "margin": 0.2,
    "max_violation": True,
    "reg_weight": 0.01,  # x sum of the image branch's weight norms
    "angular_weight": 0.5,  # alpha = 0.5 * 0.1 ** (epoch // 5) while epoch <= 20
    "angular_decay_every": 5,
    "angular_until_epoch": 20,
    "need_concept_label": 1,
    "concept_weight": 0.5,  # theta
    "concept_hidden": 1024,
    "need_adversary_data": 0,
    "adversary_type": "noun",  # noun | num | rela | mixed
    "adversary_num": 10,
    "adversary_step": -1,
    "adv_margin": 0.5,
    "adversary_weight": 0.5,  # gamma
    "adversary_file": None,  # the original {split}_caps+rephrase+30advs.json; None: generated word swaps
    "dropout": 0.1,  # hidden / attention dropout of bert_config.json and t_cfg.json
    "bert_init": None,  # BERT-base uncased weights: converted pytorch_model.bin or model.safetensors
    "freeze_bert": True,
    "vocab": "config",  # "config": vocab_file / the config's vocab; "build": from the train captions (random BERT)
    "vocab_file": None,  # BERT-base uncased vocab.txt, copied next to the checkpoints
    "val_batch_size": 128,
}
TRAIN_RECIPE = (
    "muziyongshixin/adv_cross_modal_hashing@cf0f9f3: train_reranking.py (argparse defaults, adjust_learning_rate), "
    "reranking_model.py (ReRankSAEM.forward_loss), loss.py (ContrastiveLoss, AngularLoss, AdversaryLossWithImg), "
    "enhanced_data.py (one sample per caption)"
)


fico_trainers = trainer_hook(
    *(
        TrainerSpec(
            model=f"adv-{bits}",
            factory="fico_adv.train:train",
            description=(
                f"ADV re-rank model, {bits} bits: hardest-negative triplet loss on relaxed codes + angular loss + "
                "concept BCE (+ adversarial captions), Adam 1e-4, frozen BERT; selected on the validation split."
            ),
            defaults=TRAIN_DEFAULTS,
            paper_recipe=TRAIN_RECIPE,
        )
        for bits in (2048, 64)
    )
)
