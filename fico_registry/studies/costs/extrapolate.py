"""Cost models fitted on measured scales, to predict (and refuse) the scales that were not run.

Each component of a run's time is modelled as linear in the one quantity that drives it:

    encode_images   t = a + b * n_images            (one forward pass per image)
    encode_texts    t = a + b * n_texts             (one forward pass per caption)
    search          t = a + b * n_images * n_texts  (every image-text cell scored, both directions)
    attention       t = a + b * n_images * n_texts  (cross-attention scores every pair)
    rerank          t = a + b * rerank_pairs        (rerank_pairs = n_images * min(k, n_texts)
                                                     + n_texts * min(k, n_images))

With two or more measured scales a and b are fitted by least squares (a >= 0: if the best line
has a negative intercept it is refitted through the origin); with one, b = t / x and a = 0. Before
any scale has run, b comes from a timed probe batch of the base corpus (see runner.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fico_registry.studies.costs.scales import Scale

FEATURES = {
    "encode_images": "n_images",
    "encode_texts": "n_texts",
    "search": "n_images*n_texts",
    "attention": "n_images*n_texts",
    "rerank": "rerank_pairs",
}


def rerank_pairs(scale: Scale, k: int) -> int:
    """(image, text) pairs a fusion re-rank scores: each query's top-k, both directions."""
    return scale.n_images * min(k, scale.n_texts) + scale.n_texts * min(k, scale.n_images)


def feature_value(component: str, scale: Scale, k: int = 128) -> int:
    """The quantity `component`'s time is linear in, at `scale`."""
    feature = FEATURES[component]
    if feature == "n_images":
        return scale.n_images
    if feature == "n_texts":
        return scale.n_texts
    if feature == "rerank_pairs":
        return rerank_pairs(scale, k)
    return scale.pairs


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """(a, b) of y = a + b x with a >= 0 and b >= 0; through the origin for one point."""
    if not xs:
        raise ValueError("fit_line needs at least one point")
    if len(set(xs)) >= 2:
        n = len(xs)
        mean_x, mean_y = sum(xs) / n, sum(ys) / n
        sxx = sum((x - mean_x) ** 2 for x in xs)
        b = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sxx
        a = mean_y - b * mean_x
        if a >= 0 and b > 0:
            return a, b
    b = sum(x * y for x, y in zip(xs, ys, strict=True)) / sum(x * x for x in xs)
    return 0.0, max(b, 0.0)


@dataclass
class Fit:
    """t = a + b * feature for one component, and where its points came from."""

    component: str
    a: float
    b: float
    fitted_on: list[str] = field(default_factory=list)  # scale labels, or ["probe"]

    @property
    def feature(self) -> str:
        return FEATURES[self.component]

    def predict(self, scale: Scale, k: int = 128) -> float:
        return self.a + self.b * feature_value(self.component, scale, k)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": f"t = a + b * {self.feature}",
            "a_s": self.a,
            "b_s_per_unit": self.b,
            "fitted_on": self.fitted_on,
        }


def fit_component(component: str, points: list[tuple[Scale, float]], k: int = 128) -> Fit:
    """Fit one component on (scale, seconds) points measured at different scales."""
    xs = [float(feature_value(component, s, k)) for s, _ in points]
    ys = [float(t) for _, t in points]
    a, b = fit_line(xs, ys)
    return Fit(component, a, b, [s.label for s, _ in points])


def predict(fits: dict[str, Fit], scale: Scale, k: int = 128) -> dict[str, Any]:
    """Seconds per component and in total at `scale`."""
    parts = {name: fit.predict(scale, k) for name, fit in fits.items()}
    return {"seconds": {name: round(t, 6) for name, t in parts.items()}, "total_s": round(sum(parts.values()), 6)}
