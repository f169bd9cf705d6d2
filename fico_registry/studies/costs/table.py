"""Terminal tables (rich) of the cost and search benchmark documents."""

from __future__ import annotations

from typing import Any

from fico_registry.studies.costs.storage import GIB

REFERENCE = "1000000x5000000"


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 3600:
        return f"{value / 3600:.3g} h"
    return f"{value:.3g} s"


def size(n_bytes: float | None) -> str:
    if n_bytes is None:
        return "-"
    for unit, scale in (("TiB", 1 << 40), ("GiB", GIB), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n_bytes >= scale:
            value = n_bytes / scale
            return f"{value:.3g} {unit}" if value < 1000 else f"{value:.0f} {unit}"
    return f"{int(n_bytes)} B"


_KIND = {"exact-search": "search", "cross-attention": "x-attn", "fusion-rerank": "rerank"}


def dnf_label(entry: dict[str, Any]) -> str:
    over = " + ".join(entry.get("over") or []) or "budget"
    return f"DNF: stopped, over {over}" if entry.get("stopped") else f"DNF: predicted over {over}"


def _rate(cost: dict[str, Any]) -> str:
    wall = cost["wall_s"]
    return f"{seconds(wall)} ({cost['items'] / wall:,.0f}/s)" if wall > 0 else seconds(wall)


def cost_tables(doc: dict[str, Any]) -> list[Any]:
    """Per scale timings, then per model storage / accuracy / 1M-5M prediction."""
    from rich.table import Table

    hw = doc["hardware"]
    where = f"{hw.get('cpu')}, {hw.get('cores_usable')} cores" + (f", {hw['gpu']}" if hw.get("gpu") else "")
    runs = Table(
        title=f"fico bench costs: {doc['dataset']['name']} x duplication ({where}, torch {hw['torch']})",
        caption="wall seconds (items/s); query work: both directions; ~ = predicted for a scale that did not run (DNF)",
    )
    for col in (
        "model",
        "scale",
        "status",
        "encode images",
        "encode texts",
        "query work",
        "scorer calls",
        "total",
        "predicted",
    ):
        runs.add_column(col, justify="left" if col in ("model", "scale", "status") else "right")
    for model in doc["models"]:
        if model["status"] != "ok":
            runs.add_row(model["name"], "-", f"[red]error[/red]: {model['error'][:80]}", *["-"] * 6)
            continue
        for s in model["scales"]:
            pred = s["predicted"]["total_s"]
            if s["status"] == "ok":
                q = s["query"]
                runs.add_row(
                    model["name"],
                    s["scale"],
                    "ok",
                    _rate(s["encode"]["images"]),
                    _rate(s["encode"]["texts"]),
                    f"{seconds(q['seconds'])} ({_KIND[q['kind']]})",
                    str(q.get("scorer_calls", "-")),
                    seconds(s["total_s"]),
                    seconds(pred),
                )
            else:
                p = s["predicted"]["seconds"]
                query_pred = sum(v for k, v in p.items() if not k.startswith("encode"))
                runs.add_row(
                    model["name"],
                    s["scale"],
                    f"[yellow]{dnf_label(s)}[/yellow]",
                    f"~{seconds(p['encode_images'])}",
                    f"~{seconds(p['encode_texts'])}",
                    f"~{seconds(query_pred)}",
                    "-",
                    "-",
                    seconds(pred),
                )
    storage = Table(title="storage (exact from shapes and dtypes), accuracy on the base corpus, predicted 1M/5M time")
    for col in (
        "model",
        "bytes/image emb+attn",
        "bytes/text emb+attn",
        "embeddings @1M/5M",
        "attention feats @1M/5M",
        "RSUM %",
        "predicted 1M/5M",
    ):
        storage.add_column(col, justify="left" if col == "model" else "right")
    for model in doc["models"]:
        if model["status"] != "ok":
            continue
        per = model["storage"]["per_item"]
        at = model["storage"]["at"][REFERENCE]
        accuracy = model.get("accuracy") or {}
        rsum = f"{100 * accuracy['rsum']:.1f}" if accuracy.get("status") == "ok" else accuracy.get("status", "-")
        storage.add_row(
            model["name"],
            f"{per['image']['embedding']} + {per['image']['attention']}",
            f"{per['text']['embedding']} + {per['text']['attention']}",
            size(at["embedding_bytes"]["total"]),
            size(at["attention_bytes"]["total"]),
            rsum,
            seconds(model["predicted_at_reference"][REFERENCE]["total_s"]),
        )
    return [runs, storage]


def search_tables(doc: dict[str, Any]) -> list[Any]:
    """Per size: every index at its reported setting, then the sweeps of the tuned ones."""
    from rich.table import Table

    tables = []
    for result in doc["results"]:
        ks = result["ks"]
        top = max(ks)
        table = Table(
            title=f"fico bench search: {result['n_database']:,} database x {result['n_queries']:,} queries "
            f"(d={result['dim']}, {result['bits']}-bit codes, {result['direction']})",
            caption=f"search: one search(k={top}) of every query; R@k vs exhaustive float search (flat-ip)",
        )
        for col in ("index", "params", "build", f"search (k={top})", "µs/query", *[f"R@{k}" for k in ks], "bytes"):
            table.add_column(col, justify="left" if col in ("index", "params") else "right")
        for name, entry in result["indexes"].items():
            params = ", ".join(f"{k}={v}" for k, v in (entry.get("params") or {}).items())
            table.add_row(
                name,
                params,
                seconds(entry["build_s"]),
                seconds(entry["search_s"]),
                f"{1e6 * entry['search_s'] / max(1, result['n_queries']):.1f}",
                *[f"{entry['recall'][str(k)]:.4f}" for k in ks],
                size(entry["bytes"]),
            )
        tables.append(table)
        sweeps = Table(title="sweeps: R@k and time of search(k) at each setting")
        for col in ("index", "setting", *[f"R@{k} (time)" for k in ks]):
            sweeps.add_column(col, justify="left" if col in ("index", "setting") else "right")
        for name, entry in result["indexes"].items():
            param = entry.get("sweep_param")
            for point in entry.get("sweep") or []:
                marker = " *" if point[param] == entry["params"][param] else ""
                cells = [f"{point['recall'][str(k)]:.4f} ({seconds(point['search_s_by_k'][str(k)])})" for k in ks]
                sweeps.add_row(name, f"{param}={point[param]}{marker}", *cells)
        if sweeps.row_count:
            sweeps.caption = "* the setting reported above (smallest meeting the target)"
            tables.append(sweeps)
    return tables
