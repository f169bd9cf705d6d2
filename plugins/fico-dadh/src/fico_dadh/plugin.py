"""Registration only: imported at discovery time, so it imports nothing heavy."""

from fico_registry import Family, ModelSpec, OutputKind, hookimpl
from fico_registry.plugin_api import TrainerSpec, trainer_hook

PAPER = "Bai C. et al.: Deep Adversarial Discrete Hashing for Cross-Modal Retrieval. ACM ICMR 2020"
URL = "https://github.com/Zjut-MultimediaPlus/DADH"

# config.py of Zjut-MultimediaPlus/DADH: image_dim 4096, hidden_dim 8192 (then //2, //4), bit 64,
# dropout False. text_dim: FiCo-ITR's 300-d Doc2Vec (the repo's MIRFlickr tags are 1386-d).
# image_mean / image_std: the scalar mean and std of the training image-feature matrix that
# datasets/data_handler.py subtracts and divides by; null = read image_norm.json beside the checkpoint.
_COMMON = {
    "image_dim": 4096,
    "text_dim": 300,
    "dropout": False,
    "image_mean": None,
    "image_std": None,
    "code_format": "pm1",
    "precision": "fp32",
    "seed": 0,
    "data_file": None,  # the original .mat (z-scoring statistics of a checkpoint); found from the run folder
}
CONFIGS = {
    "default": {**_COMMON, "hidden_dim": 8192, "bits": 64},
    # 1024 -> 512 -> 256: the same depth at a fraction of the weights, for CPU training runs.
    "small": {**_COMMON, "hidden_dim": 1024, "bits": 64},
    "tiny": {**_COMMON, "hidden_dim": 16, "bits": 16},
}


@hookimpl
def fico_models(register):
    register(
        ModelSpec(
            name="dadh",
            family=Family.CG,
            output=OutputKind.BINARY,
            bits=64,
            image_input="vgg19-fc7",
            text_input="doc2vec",
            factory="fico_dadh.model:build",
            configs=CONFIGS,
            paper=PAPER,
            url=URL,
            license="unknown (the original repository has no license file)",
            description=(
                "DADH generator (GEN): 4096-d VGG-19 fc7, z-scored by one global scalar mean/std, and 300-d Doc2Vec "
                "through [Linear, BatchNorm, ReLU] x 3 (8192, 4096, 2048), then Linear + tanh; sign -> 64-bit {-1,+1} "
                "codes. No public weights: load a GEN_module.pth written by DADH's main.py or by `fico train dadh`."
            ),
            extra={"fico_itr_key": "dadh", "checkpoint_layout": "raw GEN state dict (GEN_module.pth)"},
        )
    )


# -- training recipe (fico train dadh): fico_dadh.train, imported only when training -----------------
# config.py (class Default) and main.py of Zjut-MultimediaPlus/DADH@5869b81 (bits from the model config).
TRAIN_DEFAULTS = {
    "epochs": 300,  # max_epoch
    "batch_size": 128,
    "lr": 0.00005,
    # weight of the label-weighted cross-modal triplet loss (alpha == 10 also switches the NDCG weights on)
    "alpha": 10,
    "beta": 1,  # weight of the quantisation loss (main.py adds 0.1: the effective weight is beta + 0.1)
    "gamma": 1,  # weight of the adversarial losses
    "mu": 0.00001,  # discrete update: B = sign(L P + mu / 2 (H_i + H_t))
    "lamb": 1,  # ridge of the label projection P
    "margin": 0.4,
    "weight_decay": 0.0005,  # generator Adam
    "dis_weight_decay": 0.0001,  # discriminator Adams, betas (0.5, 0.9)
    "gradient_penalty": 10,
    "lr_decay": 0.8,  # x0.8 after epochs 0, 100, 200, ... (epoch % 100 == 0), never below 1e-6
    "lr_decay_every": 100,
    "valid_freq": 1,
    "eval_batch_size": 128,
    "text_sample": "random",  # one of an image's captions per epoch ("random") or their mean vector ("mean")
    "select_by": "map",  # model selection on the validation split: category mAP (as DADH) or "rsum"
    "image_features": None,  # vgg19-fc7 config; None: "tiny" for the tiny model config, else "default"
    "text_features": None,  # doc2vec config; None: as image_features
}
TRAIN_RECIPE = (
    "Zjut-MultimediaPlus/DADH@5869b81: main.py (train loop, discriminator steps with gradient penalty, discrete "
    "B update, lr decay, best-by-mAP GEN_module.pth), config.py (defaults), triplet_loss.py (NDCG-weighted "
    "cross-modal triplet loss), models/gen_model.py, models/dis_model.py, datasets/data_handler.py (z-scoring)"
)


fico_trainers = trainer_hook(
    TrainerSpec(
        model="dadh",
        factory="fico_dadh.train:train",
        description=(
            "DADH: label-weighted cross-modal triplet loss + quantisation to discrete codes B (updated from the "
            "labels every epoch) + adversarial feature and hash discriminators (WGAN-GP); Adam 5e-5; supervised "
            "by the category labels; selected by validation mAP."
        ),
        defaults=TRAIN_DEFAULTS,
        paper_recipe=TRAIN_RECIPE,
    )
)
