"""The --judgments, --ndcg-ks, --gain, --captions-json, --image-ids / --caption-ids options.

--judgments takes (repeatable, comma-separated) specs:
  NAME            a named set (eccv, cxc, coco for COCO; shared-objects for the synthetic corpus);
                  only `fico evaluate`, which loads the corpus
  NAME:i2t=PATH   a TREC qrels file (`query 0 candidate grade`) whose queries are image ids and
                  candidates caption ids; NAME:t2i=PATH the other way round. Both directions may
                  be given under one NAME.
  NAME=PATH       the same, the direction read from the file: i2t when every query id is an image
                  id and not every one is a caption id, t2i the other way round; otherwise an error
                  asks for NAME:i2t= or NAME:t2i=.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from fico_registry.cli.options import apply_options
from fico_registry.errors import OptionError

JUDGMENTS_HELP = (
    "Judged relevance: NAME (eccv, cxc, coco with --dataset coco; shared-objects for synthetic), or "
    "NAME:i2t=QRELS / NAME:t2i=QRELS (TREC qrels: query 0 candidate grade; ids as the corpus' image / caption ids), "
    "or NAME=QRELS (direction read from the ids). Repeatable, comma-separated."
)


def judged_options(*, names: bool, ids: bool) -> Any:
    """Decorator adding the judged-relevance options of one command."""

    def wrap(func: Any) -> Any:
        options = [
            click.option("--judgments", "judgments", multiple=True, help=JUDGMENTS_HELP),
            click.option("--ndcg-ks", default="10", show_default=True, help="Ks of judged NDCG@K and MRR@K."),
            click.option(
                "--gain",
                type=click.Choice(["linear", "exponential"]),
                default="linear",
                show_default=True,
                help="NDCG gain of a grade g: g (trec_eval) or 2^g - 1.",
            ),
        ]
        if names:
            options.append(click.option(
                "--captions-json", type=click.Path(dir_okay=False, path_type=Path),
                help="COCO's captions_val2014.json for --judgments eccv/cxc/coco "
                "(default: ROOT/annotations/captions_val2014.json).",
            ))  # fmt: skip
        if ids:
            options += [
                click.option("--image-ids", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                             help="Text file, one image id a line (qrels ids; default: 0, 1, ...)."),
                click.option("--caption-ids", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                             help="Text file, one caption id a line (qrels ids; default: 0, 1, ...)."),
            ]  # fmt: skip
        return apply_options(func, options)

    return wrap


def parse_specs(values: Sequence[str]) -> tuple[list[str], dict[str, dict[str | None, Path]]]:
    """(named sets, files: name -> {direction or None: path})."""
    names: list[str] = []
    files: dict[str, dict[str | None, Path]] = {}
    for value in values:
        for spec in (x.strip() for x in value.split(",")):
            if not spec:
                continue
            if "=" not in spec:
                names.append(spec)
                continue
            key, path = spec.split("=", 1)
            name, _, direction = key.partition(":")
            if not name or not path:
                raise OptionError(f"--judgments {spec!r}: use NAME:i2t=PATH, NAME:t2i=PATH or NAME=PATH")
            if direction and direction not in ("i2t", "t2i"):
                raise OptionError(f"--judgments {spec!r}: the direction must be i2t or t2i, got {direction!r}")
            slot = files.setdefault(name, {})
            if (direction or None) in slot or (slot and (None in slot or not direction)):
                raise OptionError(f"--judgments: {name!r} is given twice for the same direction")
            if not Path(path).is_file():
                raise OptionError(f"--judgments {spec!r}: no file {path}")
            slot[direction or None] = Path(path)
    return names, files


def read_ids(path: Path | None, count: int, what: str) -> list[str]:
    if path is None:
        return [str(i) for i in range(count)]
    ids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(ids) != count:
        raise OptionError(f"--{what}-ids {path}: {len(ids)} ids for {count} {what}s (one id a line)")
    if len(set(ids)) != len(ids):
        raise OptionError(f"--{what}-ids {path}: ids must be unique")
    return ids


def _direction_of(path: Path, image_ids: Sequence[str], caption_ids: Sequence[str], name: str) -> str:
    queries = {
        line.split()[0]
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.split() and not line.startswith("#")
    }
    images, captions = queries <= set(image_ids), queries <= set(caption_ids)
    if images != captions:
        return "i2t" if images else "t2i"
    why = "both image and caption ids" if images else "neither all image ids nor all caption ids"
    raise OptionError(f"--judgments {name}={path}: its query ids are {why}; say {name}:i2t={path} or {name}:t2i={path}")


def judgments_from_files(
    files: dict[str, dict[str | None, Path]], image_ids: Sequence[Any], caption_ids: Sequence[Any]
) -> dict[str, Any]:
    """name -> JudgmentSet from qrels files, ids matched as strings."""
    from fico_registry.data.judgments import Judgments, JudgmentSet

    image_ids, caption_ids = [str(x) for x in image_ids], [str(x) for x in caption_ids]
    out: dict[str, Any] = {}
    for name, slots in files.items():
        parts: dict[str, Any] = {"i2t": None, "t2i": None}
        for direction, path in slots.items():
            direction = direction or _direction_of(path, image_ids, caption_ids, name)
            queries, candidates = (image_ids, caption_ids) if direction == "i2t" else (caption_ids, image_ids)
            parts[direction] = Judgments.from_trec(path, queries, candidates)
        sources = ", ".join(f"{d or 'auto'}: {p.name}" for d, p in slots.items())
        out[name] = JudgmentSet(name, parts["i2t"], parts["t2i"], source=f"qrels ({sources})")
    return out


def ndcg_kwargs(opts: dict[str, Any]) -> dict[str, Any]:
    """Pop --ndcg-ks / --gain from the command's options as evaluator keywords."""
    text = opts.pop("ndcg_ks")
    try:
        ks = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise OptionError(f"--ndcg-ks {text!r}: use positive integers, e.g. 10 or 5,10") from None
    return {"ndcg_ks": ks, "gain": opts.pop("gain")}


def for_arrays(opts: dict[str, Any], n_images: int, n_texts: int) -> dict[str, Any]:
    """evaluate-embeddings / -similarity: the judgments= and NDCG keywords from the options."""
    names, files = parse_specs(opts.pop("judgments"))
    image_path, caption_path = opts.pop("image_ids"), opts.pop("caption_ids")
    if names:
        raise OptionError(
            f"--judgments {', '.join(names)}: named sets need a corpus (fico evaluate --dataset); "
            "here give qrels files: NAME:i2t=PATH or NAME:t2i=PATH"
        )
    kwargs = ndcg_kwargs(opts)
    if files:
        image_ids, caption_ids = read_ids(image_path, n_images, "image"), read_ids(caption_path, n_texts, "caption")
        kwargs["judgments"] = judgments_from_files(files, image_ids, caption_ids)
    return kwargs


def attach_specs(corpus: Any, specs: Sequence[str], root: Path | None, captions_json: Path | None) -> Any:
    """The corpus with the --judgments specs (named sets and qrels files) attached."""
    from fico_registry.data.named_judgments import attach_named_judgments

    names, files = parse_specs(specs)
    if names:
        corpus = attach_named_judgments(corpus, names, root=root, captions_json=captions_json)
    caption_ids = corpus.caption_ids or [str(i) for i in range(corpus.n_captions)]
    for name, judged in judgments_from_files(files, corpus.image_ids, caption_ids).items():
        corpus = corpus.with_judgments(name, judged)
    return corpus


def for_corpus(corpus: Any, opts: dict[str, Any], root: Path | None) -> tuple[Any, dict[str, Any]]:
    """fico evaluate: the corpus with the --judgments attached, and the NDCG keywords."""
    corpus = attach_specs(corpus, opts.pop("judgments"), root, opts.pop("captions_json"))
    return corpus, ndcg_kwargs(opts)
