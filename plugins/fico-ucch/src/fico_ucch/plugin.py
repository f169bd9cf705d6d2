"""Registration only: imported at discovery time, so it imports nothing heavy."""

from fico_registry import Family, ModelSpec, OutputKind, hookimpl
from fico_registry.plugin_api import TrainerSpec, trainer_hook

PAPER = (
    "Hu P., Zhu H., Lin J., Peng D., Zhao Y.-P., Peng X.: Unsupervised Contrastive Cross-modal Hashing. "
    "IEEE TPAMI 45(3):3877-3889, 2023, doi:10.1109/TPAMI.2022.3177356"
)
URL = "https://github.com/penghu-cs/UCCH"

# Feature mode of UCCH.py: ImageNet(y_dim=4096, hiden_layer=3) and TextNet(y_dim=300, hiden_layer=2),
# mid_num1 = mid_num2 = 8192, so fc = Linear-ReLU-Linear-ReLU-Linear and Linear-ReLU-Linear.
# bits: FiCo-ITR's 64 (UCCH.py's --bit default is 32). Checkpoints override every size: the
# `.t7` stores no hyper-parameters, so they are read from the weight shapes.
_COMMON = {"image_dim": 4096, "text_dim": 300, "norm": True, "code_format": "pm1", "precision": "fp32", "seed": 0}
CONFIGS = {
    "default": {**_COMMON, "bits": 64, "image_hidden": [8192, 8192], "text_hidden": [8192]},
    # 1024-wide hidden layers: the same depth at 1/64 of the weights, for CPU training runs.
    "small": {**_COMMON, "bits": 64, "image_hidden": [1024, 1024], "text_hidden": [1024]},
    "tiny": {**_COMMON, "bits": 16, "image_hidden": [8, 8], "text_hidden": [8]},
}


@hookimpl
def fico_models(register):
    register(
        ModelSpec(
            name="ucch",
            family=Family.CG,
            output=OutputKind.BINARY,
            bits=64,
            image_input="vgg19-fc7",
            text_input="doc2vec",
            factory="fico_ucch.model:build",
            configs=CONFIGS,
            paper=PAPER,
            url=URL,
            license="unknown (the original repository has no license file)",
            description=(
                "UCCH feature-mode hashing networks: 4096-d VGG-19 fc7 -> MLP (8192, 8192) and 300-d Doc2Vec -> "
                "MLP (8192), each tanh -> L2 -> sign, 64-bit {-1,+1} codes. No public weights: load a "
                "{arch}_{bit}_best_checkpoint.t7 written by UCCH.py (feature mode) or by `fico train ucch`."
            ),
            extra={
                "fico_itr_key": "ucch",
                "checkpoint_layout": "t7 dict: image_model_state_dict, text_model_state_dict",
            },
        )
    )


# -- training recipe (fico train ucch): fico_ucch.train, imported only when training -----------------
# utils/config.py argparse defaults of penghu-cs/UCCH@0c20e62 (bits come from the model config).
TRAIN_DEFAULTS = {
    "epochs": 100,  # --max_epochs
    "batch_size": 256,  # --train_batch_size (drop_last=True)
    "eval_batch_size": 256,
    "lr": 0.0001,
    "wd": 0.000001,  # Adam weight_decay
    "optimizer": "Adam",  # Adam | SGD (momentum 0.9)
    "ls": "linear",  # "linear": MultiStepLR([30, 60, 90, 120], 0.1); "cos": CosineAnnealingLR(epochs)
    "alpha": 0.9,  # loss = alpha * contrastive hashing + (1 - alpha) * cross-modal ranking
    "momentum": 0.4,  # of the code memory
    "K": 4096,  # negatives drawn from the memory
    "T": 0.9,  # temperature, scaled by sqrt(bits)
    "shift": 1.0,  # ranking loss: score shift of the pairs outside the margin
    "margin": 0.2,
    "warmup_epoch": 1,  # epochs with in-batch negatives (momentum 0) before the memory is used
    "grad_clip": 1.0,  # clip_grad_norm(parameters, 1.)
    "arch": "vgg11",  # only names the checkpoint file, as UCCH.py's --arch does in feature mode
    "text_sample": "random",  # one of an image's captions per epoch ("random") or their mean vector ("mean")
    "select_by": "map",  # model selection on the validation split: category mAP (as UCCH) or "rsum"
    "image_features": None,  # vgg19-fc7 config; None: "tiny" for the tiny model config, else "default"
    "text_features": None,  # doc2vec config; None: as image_features
}
TRAIN_RECIPE = (
    "penghu-cs/UCCH@0c20e62: UCCH.py (train / test loop, lr schedule, clip_grad_norm 1.0, best-by-mAP .t7), "
    "utils/config.py (argparse defaults), NCE/NCEAverage.py (momentum code memory), NCE/NCECriterion.py, "
    "src/utils.py (ContrastiveLoss = cross-modal ranking loss), nets/ImageNet.py, nets/TextNet.py"
)


fico_trainers = trainer_hook(
    TrainerSpec(
        model="ucch",
        factory="fico_ucch.train:train",
        description=(
            "UCCH: contrastive hashing against a momentum memory of binary codes (NCE softmax, K negatives) + "
            "cross-modal ranking loss; Adam 1e-4; unsupervised (labels only for model selection on the "
            "validation split)."
        ),
        defaults=TRAIN_DEFAULTS,
        paper_recipe=TRAIN_RECIPE,
    )
)
