"""Encode cost of the coarse-grained hashing models (ucch, dadh, adv-64) next to a continuous model.

On a synthetic corpus (default 500 images, 2,500 captions), per model and modality: items per second
of the encoder alone (inputs prepared beforehand, one warm-up batch excluded), and bytes per item of
what is stored: packed bits for the hash models (bits / 8), float32 for the continuous one. UCCH and
DADH take precomputed VGG-19 fc7 / Doc2Vec features, ADV bottom-up region features: their feature
extraction is a separate cost, timed here too (VGG-19 at the published 224 px on a few images, at
112 px on the whole corpus; Doc2Vec inference on every caption). Ratios are against the continuous
model (`reference-dual` by default, a small CNN + transformer encoding pixels and raw text).

Weights are random (timing does not depend on them). Configs: the published (default) architecture
where it runs on a CPU in reasonable time; adv-64's default BERT-base needs BERT's WordPiece
vocabulary, so the bench writes a stand-in vocab.txt of the same size (30,522 entries).

Usage: .venv/bin/python bench/bench_cg_encode.py [--images 500] [--text-items 500] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

HASH_MODELS = ("ucch", "dadh", "adv-64")


def timed(encode: Any, batches: list[Any]) -> float:
    """Seconds for encoding every batch after one warm-up call on the first."""
    with torch.inference_mode():
        encode(batches[0])
        start = time.perf_counter()
        for batch in batches:
            encode(batch)
        return time.perf_counter() - start


def split(items: Any, size: int) -> list[Any]:
    return [items[s : s + size] for s in range(0, len(items), size)]


def stand_in_vocab(folder: Path, captions: list[str], size: int = 30522) -> Path:
    """A vocab.txt of BERT-base uncased's size: specials, characters, caption words, fillers."""
    from fico_adv.wordpiece import SPECIAL_TOKENS, tiny_vocab

    tokens = list(dict.fromkeys([*SPECIAL_TOKENS, *tiny_vocab()]))
    words = sorted({w.strip(".,").lower() for c in captions for w in c.split()} - set(tokens))
    tokens += words
    tokens += [f"[unused{i}]" for i in range(size - len(tokens))]
    path = folder / "vocab.txt"
    path.write_text("\n".join(tokens[:size]) + "\n", encoding="utf-8")
    return path


def feature_costs(corpus: Any, vgg224_images: int, batch: int) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """VGG-19 fc7 (112 px for the whole corpus, 224 px on a subset) and Doc2Vec features, timed."""
    from fico_features.run_inputs import RunInputs, build, resolve_config

    rows = []
    images = [corpus.load_image(i) for i in range(corpus.n_images)]
    captions = list(corpus.captions)
    inputs = RunInputs(image_config="lowres", text_config="default", cache=False)
    began = time.perf_counter()
    inputs.fit(corpus)  # Doc2Vec trained on these captions (the training split in a real run)
    fit_seconds = time.perf_counter() - began
    vgg = inputs.pipelines["image"]
    seconds = timed(vgg.compute, split(images, batch))
    image_features = vgg.compute(images).numpy()
    rows.append({"pipeline": "vgg19-fc7 lowres (112 px)", "items": len(images), "seconds": seconds})
    if vgg224_images:
        full, _ = resolve_config("vgg19-fc7", "default")
        vgg224 = build("vgg19-fc7", full, "cpu")
        subset = images[:vgg224_images]
        rows.append(
            {
                "pipeline": "vgg19-fc7 default (224 px)",
                "items": len(subset),
                "seconds": timed(vgg224.compute, split(subset, batch)),
            }
        )
    doc2vec = inputs.pipelines["text"]
    seconds = timed(doc2vec.compute, split(captions, 256))
    text_features = doc2vec.compute(captions).numpy()
    rows.append(
        {
            "pipeline": "doc2vec default (infer 200 epochs)",
            "items": len(captions),
            "seconds": seconds,
            "note": f"training on the {len(captions)} captions took {fit_seconds:.1f} s (once per dataset)",
        }
    )
    return {"vgg19-fc7": image_features, "doc2vec": text_features}, rows


def model_inputs(model: Any, corpus: Any, features: dict[str, np.ndarray], side: str) -> Any:
    name = model.spec.image_input if side == "image" else model.spec.text_input
    if name in features:
        return features[name]
    if name == "regions":
        return np.asarray(corpus.features["regions"].rows(np.arange(corpus.n_images)), dtype=np.float32)
    if name == "pixels":
        return [corpus.load_image(i) for i in range(corpus.n_images)]
    if name == "text":
        return list(corpus.captions)
    raise SystemExit(f"no input {name!r} for {model.spec.name}")


def measure(
    name: str, config: Any, corpus: Any, features: dict[str, np.ndarray], batch: int, text_items: int, note: str = ""
) -> dict[str, Any]:
    from fico_registry import load_model
    from fico_registry.plugin_api.cards import OutputKind

    model = load_model(name, config=config, device="cpu")
    row: dict[str, Any] = {
        "model": name,
        "config": config if isinstance(config, str) else "default*",
        "note": note,
        "inputs": f"{model.spec.image_input} / {model.spec.text_input}",
    }
    for side in ("image", "text"):
        items = model_inputs(model, corpus, features, side)
        if side == "text":
            items = items[:text_items]
        encode = model.encode_images if side == "image" else model.encode_texts
        if model.spec.image_input == "pixels" and side == "image" and hasattr(model.encoder, "preprocess_image"):
            items = torch.stack([model.encoder.preprocess_image(im) for im in items])  # as the core's loader threads do
        seconds = timed(encode, split(items, batch))
        row[f"{side}_per_s"] = len(items) / seconds
        out = encode(items[:2])
        out = out["embeds"] if isinstance(out, dict) else out
        row["returned_bytes"] = out.element_size() * out[0].numel()
    if model.spec.output is OutputKind.BINARY:
        row["width"] = f"{model.width} bits"
        row["stored_bytes"] = model.width / 8
    else:
        row["width"] = f"{model.width} dims"
        row["stored_bytes"] = model.width * 4
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--text-items", type=int, default=500, help="captions timed per model (of 5 per image)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--vgg224-images", type=int, default=16, help="images timed through VGG-19 at 224 px (0: skip)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--continuous", default="reference-dual")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    import logging

    logging.getLogger("fico_registry.models.loading").setLevel(logging.ERROR)  # "random weights" is the point here
    logging.getLogger("fico_features.vgg_pipeline").setLevel(logging.ERROR)
    from fico_registry.data import synthetic

    work = Path(tempfile.mkdtemp(prefix="bench-cg-"))
    corpus = synthetic(n_images=args.images, seed=0, split="test", root=work / "synthetic")
    print(
        f"synthetic corpus: {corpus.n_images} images, {corpus.n_captions} captions; torch {torch.__version__}, "
        f"{args.threads} thread(s) of {os.cpu_count()} cores; batch {args.batch_size}; random weights"
    )
    features, pipeline_rows = feature_costs(corpus, args.vgg224_images, args.batch_size)

    vocab = stand_in_vocab(work, list(corpus.captions))
    rows = [measure(args.continuous, "default", corpus, features, args.batch_size, args.text_items)]
    rows.append(measure("ucch", "default", corpus, features, args.batch_size, args.text_items))
    rows.append(measure("dadh", "default", corpus, features, args.batch_size, args.text_items))
    rows.append(
        measure(
            "adv-64",
            {"vocab_file": str(vocab)},
            corpus,
            features,
            args.batch_size,
            args.text_items,
            note="default architecture (BERT-base), stand-in 30,522-entry vocab",
        )
    )

    base = rows[0]
    print("\nencoders (inputs prepared; warm-up excluded)")
    header = (
        f"{'model':<16}{'config':<10}{'inputs':<22}{'width':<11}{'img/s':>9}{'txt/s':>9}{'bytes/item':>11}"
        f"{'as returned':>12}{'img x':>8}{'txt x':>8}{'bytes x':>9}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['model']:<16}{row['config']:<10}{row['inputs']:<22}{row['width']:<11}{row['image_per_s']:>9.0f}"
            f"{row['text_per_s']:>9.0f}{row['stored_bytes']:>11g}{row['returned_bytes']:>12d}"
            f"{row['image_per_s'] / base['image_per_s']:>8.2f}{row['text_per_s'] / base['text_per_s']:>8.2f}"
            f"{row['stored_bytes'] / base['stored_bytes']:>9.4f}"
        )
    print(
        f"(x: ratio to {base['model']}; bytes/item: packed bits for hash codes, float32 for embeddings; "
        "'as returned': int8 +-1 per bit before packing)"
    )
    for row in rows:
        if row["note"]:
            print(f"  {row['model']}: {row['note']}")
    print("\nfeature pipelines (the inputs of ucch / dadh)")
    for row in pipeline_rows:
        per_s = row["items"] / row["seconds"]
        note = "  " + row["note"] if row.get("note") else ""
        print(f"  {row['pipeline']:<40}{per_s:>10.2f} items/s  ({row['items']} items){note}")
    print("  bottom-up region features (adv-64): precomputed by a Faster R-CNN, not timed here")


if __name__ == "__main__":
    main()
