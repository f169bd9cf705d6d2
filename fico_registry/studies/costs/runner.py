"""`fico bench costs`: per model and scale, encode time, storage, query-time cost, within budgets.

For each model:
1. load it; warm up both encoders on one batch of the base corpus (never timed);
2. probe: encode that batch again, time it, and time the scorer and search on its outputs
   (per-item / per-pair seconds: the prediction for the first scale); read the per-item layout
   of every output tensor (storage is exact arithmetic on it);
3. accuracy on the base corpus through the standard evaluate() (for the accuracy-vs-cost plot);
4. each scale, smallest first: predict its time (fits on the scales measured so far, else the
   probe) and memory (shapes); refuse it as DNF if over budget; else build it with
   corpus.duplicated(factor), encode both sides in full (no per-item shortcut), run the
   query-time work, and add its times to the fits.
"""

from __future__ import annotations

import gc
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import torch

from fico_registry.data.corpus import Corpus
from fico_registry.models.loading import Model, load_model
from fico_registry.plugin_api.cards import OutputKind, QueryTimeAttention
from fico_registry.runtime.devices import resolve_device
from fico_registry.runtime.provenance import hardware_fingerprint
from fico_registry.studies.costs import timing
from fico_registry.studies.costs.budget import Budget, BudgetExceeded, DeadlineModel, predicted_memory
from fico_registry.studies.costs.extrapolate import Fit, fit_component, predict, rerank_pairs
from fico_registry.studies.costs.scales import REFERENCE_SCALES, Scale
from fico_registry.studies.costs.storage import StorageModel, side_layout

FORMAT_VERSION = 1
COMPONENTS = {
    "exact-search": ("encode_images", "encode_texts", "search"),
    "cross-attention": ("encode_images", "encode_texts", "attention", "search"),
    "fusion-rerank": ("encode_images", "encode_texts", "rerank", "search"),
}


@dataclass
class CostSettings:
    scales: list[Scale]
    device: str = "auto"
    batch_size: int = 32
    budget: Budget = field(default_factory=Budget)
    rerank_k: int = 128  # the paper's k for BLIP-2 / X-VLM re-ranking, whatever the card says
    topk: int = 10  # each query's top-k kept by the search step
    accuracy: bool = True
    progress: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "scales": [s.label for s in self.scales],
            "device": self.device,
            "batch_size": self.batch_size,
            "budget": self.budget.to_dict(),
            "rerank_k": self.rerank_k,
            "topk": self.topk,
            "accuracy": self.accuracy,
        }


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _cuda_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _cuda_peak(device: torch.device) -> int | None:
    return int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None


def _scale_row(scale: Scale, factor: int | None, status: str) -> dict[str, Any]:
    """The fields every row of the cost table starts with, measured ("ok") or not ("dnf")."""
    return {
        "scale": scale.label,
        "short": scale.short,
        "n_images": scale.n_images,
        "n_texts": scale.n_texts,
        "factor": factor,
        "status": status,
    }


def _dtype_of(outputs: Any) -> str:
    first = outputs.get("embeds", next(iter(outputs.values()))) if isinstance(outputs, dict) else outputs
    return str(first.dtype).replace("torch.", "")


class ModelCosts:
    """The measurements of one loaded model over the scales (the JSON entry it produces)."""

    def __init__(self, model: Model, base: Corpus, settings: CostSettings, console: Any = None) -> None:
        self.model = model
        self.base = base
        self.settings = settings
        self.console = console
        self.device = resolve_device(model.device)
        self.kind = timing.query_kind(model)
        self.components = COMPONENTS[self.kind]
        self.points: dict[str, list[tuple[Scale, float]]] = {c: [] for c in self.components}
        self.probe_fits: dict[str, Fit] = {}
        self.storage: StorageModel | None = None

    def _say(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text)

    # -- probe -------------------------------------------------------------------------------
    def probe(self) -> dict[str, Any]:
        s = self.settings
        w = max(1, min(s.batch_size, self.base.n_images))
        small = self.base.subset(w)
        began = time.perf_counter()
        for side in ("image", "text"):  # warm-up: first calls pay for lazy init, allocation, caches
            timing.encode_timed(self.model, small, side, batch_size=s.batch_size, device=self.device, progress=False)
        warmup_s = time.perf_counter() - began
        image_res, image_cost = timing.encode_timed(
            self.model, small, "image", batch_size=s.batch_size, device=self.device, progress=False
        )
        text_res, text_cost = timing.encode_timed(
            self.model, small, "text", batch_size=s.batch_size, device=self.device, progress=False
        )
        spec = self.model.spec
        bits = self.model.width if spec.output is OutputKind.BINARY else None
        # the card normalised both to enums in __post_init__; the calls only restate it for the type checker
        output = OutputKind(spec.output)
        attention = None if spec.query_time_attention is None else QueryTimeAttention(spec.query_time_attention)
        self.storage = StorageModel(
            side_layout(image_res.outputs, output, attention, bits),
            side_layout(text_res.outputs, output, attention, bits),
        )
        per_item = {
            "encode_images": (image_cost["wall_s"] + image_cost["input_s"]) / image_res.items,
            "encode_texts": (text_cost["wall_s"] + text_cost["input_s"]) / text_res.items,
            "search": timing.probe_search(
                self.model, image_res.outputs, text_res.outputs, device=self.device, k=s.topk
            ),
        }
        if self.kind == "cross-attention":
            per_item["attention"] = timing.probe_scorer(
                self.model, image_res.outputs, text_res.outputs, device=self.device
            )
        elif self.kind == "fusion-rerank":
            per_item["rerank"] = timing.probe_scorer(
                self.model, image_res.outputs, text_res.outputs, device=self.device
            )
        self.probe_fits = {c: Fit(c, 0.0, per_item[c], ["probe"]) for c in self.components}
        return {
            "images": w,
            "texts": text_res.items,
            "warmup_s": round(warmup_s, 6),
            "encode": {"images": image_cost, "texts": text_cost},
            "seconds_per_unit": per_item,
            "output_dtype": {"image": _dtype_of(image_res.outputs), "text": _dtype_of(text_res.outputs)},
        }

    # -- predictions ---------------------------------------------------------------------------
    def fits(self) -> dict[str, Fit]:
        """Fits on the measured scales; components never measured yet use the probe."""
        k = self.settings.rerank_k
        return {
            c: fit_component(c, self.points[c], k) if self.points[c] else self.probe_fits[c] for c in self.components
        }

    def prediction(self, scale: Scale) -> dict[str, Any]:
        assert self.storage is not None
        out = predict(self.fits(), scale, self.settings.rerank_k)
        out["memory_bytes"] = predicted_memory(self.storage, scale, self.kind)
        return out

    def _refusal(self, scale: Scale) -> tuple[dict[str, str], dict[str, Any]]:
        pred = self.prediction(scale)
        return self.settings.budget.refuse(pred["total_s"], pred["memory_bytes"]["total"]), pred

    def _dnf(
        self,
        scale: Scale,
        over: dict[str, str],
        pred: dict[str, Any],
        factor: int | None,
        stopped: BudgetExceeded | None = None,
    ) -> dict[str, Any]:
        fits = self.fits()
        if stopped is not None:
            reason, over = str(stopped), {"time": str(stopped)}
        else:
            reason = "not started: " + "; ".join(over.values())
        return {
            **_scale_row(scale, factor, "dnf"),
            "reason": reason,
            "over": sorted(over),
            "stopped": stopped is not None,
            "elapsed_s": None if stopped is None else round(stopped.elapsed, 3),
            "predicted": pred,
            "extrapolation": {c: f.to_dict() for c, f in fits.items()},
            "storage": self.storage.at(scale) if self.storage else None,
        }

    # -- accuracy -------------------------------------------------------------------------------
    def accuracy(self) -> dict[str, Any]:
        from fico_registry.evaluator.evaluate import evaluate

        s = self.settings
        scale = Scale(self.base.n_images, self.base.n_captions)
        over, pred = self._refusal(scale)
        if over:
            return {
                "status": "dnf",
                "reason": "not started: " + "; ".join(over.values()),
                "over": sorted(over),
                "predicted": pred,
            }
        began = time.perf_counter()
        try:
            report = evaluate(
                DeadlineModel(self.model, s.budget.time_s),
                self.base,
                cache=False,
                batch_size=s.batch_size,
                device=self.device,
                rerank_k=s.rerank_k,
                progress=s.progress,
            )
        except BudgetExceeded as exc:
            return {"status": "dnf", "reason": str(exc), "over": ["time"], "predicted": pred}
        data = report.to_dict()
        instance = data["instance"]
        rsum = sum(instance[d][f"R@{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10) if f"R@{k}" in instance[d])
        category = {
            d: {k: v for k, v in m.items() if k.startswith("mAP")} for d, m in (data.get("category") or {}).items()
        }
        return {
            "status": "ok",
            "corpus": data.get("corpus"),
            "instance": instance,
            "category": category or None,
            "rsum": rsum,
            "seconds": round(time.perf_counter() - began, 6),
            "costs": data.get("costs"),
        }

    # -- one scale ------------------------------------------------------------------------------
    def run_scale(self, scale: Scale) -> dict[str, Any]:
        s = self.settings
        assert self.storage is not None
        factor = scale.factor_over(self.base.n_images, self.base.n_captions)
        over, pred = self._refusal(scale)
        if over:
            return self._dnf(scale, over, pred, factor)
        corpus = self.base.duplicated(factor)
        model = DeadlineModel(self.model, s.budget.time_s)
        _cuda_reset(self.device)
        try:
            image_res, image_cost = timing.encode_timed(
                model, corpus, "image", batch_size=s.batch_size, device=self.device, progress=s.progress
            )
            text_res, text_cost = timing.encode_timed(
                model, corpus, "text", batch_size=s.batch_size, device=self.device, progress=s.progress
            )
            query = timing.query_time(
                model,
                image_res.outputs,
                text_res.outputs,
                device=self.device,
                k=s.topk,
                rerank_k=s.rerank_k,
                check=model.check,
            )
        except BudgetExceeded as exc:
            gc.collect()
            return self._dnf(scale, {}, pred, factor, stopped=exc)
        output_bytes = image_res.nbytes + text_res.nbytes
        del image_res, text_res
        gc.collect()
        seconds = {
            "encode_images": image_cost["wall_s"] + image_cost["input_s"],
            "encode_texts": text_cost["wall_s"] + text_cost["input_s"],
            **query["components"],
        }
        for component, value in seconds.items():
            self.points[component].append((scale, value))
        return {
            **_scale_row(scale, factor, "ok"),
            "encode": {"images": image_cost, "texts": text_cost},
            "query": query,
            "seconds": {k: round(v, 6) for k, v in seconds.items()},
            "total_s": round(sum(seconds.values()), 6),
            "predicted": pred,
            "memory": {
                "encoder_output_bytes": output_bytes,
                "encoder_output_bytes_expected": self.storage.output_bytes(scale),
                "predicted_peak_bytes": pred["memory_bytes"]["total"],
                "rss_high_water_bytes": _peak_rss_bytes(),
                "cuda_peak_bytes": _cuda_peak(self.device),
            },
            "storage": self.storage.at(scale),
        }

    # -- all of it ------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        s = self.settings
        model, spec = self.model, self.model.spec
        entry: dict[str, Any] = {
            "name": spec.name,
            "status": "ok",
            "family": str(spec.family),
            "output": str(spec.output),
            "query_kind": self.kind,
            "measure": spec.measure,
            "width": model.width,
            "config_name": model.config_name,
            "precision": model.config.get("precision", "fp32"),
            "batch_size": s.batch_size,
            "device": str(self.device),
            "rerank_k": s.rerank_k if self.kind == "fusion-rerank" else None,
            "provenance": model.provenance(),
        }
        self._say(f"[bold]{spec.name}[/bold] ({model.config_name}, {self.kind}, {self.device}): warm-up and probe")
        entry["probe"] = self.probe()
        assert self.storage is not None
        entry["storage"] = self.storage.to_dict()
        if s.accuracy:
            self._say(f"  accuracy on the base corpus ({self.base.n_images} images, {self.base.n_captions} captions)")
            entry["accuracy"] = self.accuracy()
        entry["scales"] = []
        for scale in s.scales:
            result = self.run_scale(scale)
            entry["scales"].append(result)
            note = f"{result['total_s']:.3g} s" if result["status"] == "ok" else f"DNF ({result['reason']})"
            self._say(f"  {scale.label}: {note}")
        fits = self.fits()
        entry["extrapolation"] = {c: f.to_dict() for c, f in fits.items()}
        reference = [Scale.parse(r) for r in REFERENCE_SCALES]
        scales_for_storage = sorted({*s.scales, *reference})
        entry["storage"]["at"] = {sc.label: self.storage.at(sc) for sc in scales_for_storage}
        entry["predicted_at_reference"] = {sc.label: self.prediction(sc) for sc in reference}
        if self.kind == "fusion-rerank":
            entry["rerank_pairs_at_reference"] = {sc.label: rerank_pairs(sc, s.rerank_k) for sc in reference}
        return entry


def run_costs(
    models: list[str],
    base: Corpus,
    settings: CostSettings,
    *,
    config: str = "default",
    checkpoints: dict[str, str] | None = None,
    console: Any = None,
    dataset: dict[str, Any] | None = None,
    on_model: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Measure every model; a model that fails to load or run is reported, never fatal."""
    started = time.perf_counter()
    document: dict[str, Any] = {
        "fico_bench": "costs",
        "format_version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "hardware": hardware_fingerprint(),
        "settings": {**settings.to_dict(), "config": config},
        "dataset": {
            **(dataset or {}),
            "name": base.name,
            "split": base.split,
            "content_hash": base.content_hash,
            "base_images": base.n_images,
            "base_texts": base.n_captions,
        },
        "models": [],
    }
    for scale in settings.scales:  # refuse impossible scales before any model runs
        scale.factor_over(base.n_images, base.n_captions)
    for name in models:
        checkpoint = (checkpoints or {}).get(name)
        model = None
        try:
            device = None if settings.device == "auto" else settings.device
            model = load_model(name, config=config, checkpoint=checkpoint, device=device)
            entry = ModelCosts(model, base, settings, console).run()
        except Exception as exc:  # one broken model must not lose the others' measurements
            entry = {"name": name, "status": "error", "error": f"{type(exc).__name__}: {exc}", "config_name": config}
            if console is not None:
                console.print(f"[red]{name}: {entry['error']}[/red]")
        finally:
            model = None  # free its weights before the next model loads
            gc.collect()
        document["models"].append(entry)
        if on_model is not None:
            on_model(entry)
    document["seconds"] = round(time.perf_counter() - started, 3)
    return document
