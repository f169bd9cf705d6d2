"""check_plugin + check_model for every model of fico-example (what `fico check example` runs), and one evaluation."""

import fico_registry as fico
from fico_registry.plugin_api.testing import plugin_tests

test_plugin = plugin_tests("fico-example")


def test_evaluates_on_a_synthetic_corpus(tmp_path):
    corpus = fico.data.synthetic(n_images=8, root=tmp_path)
    report = fico.evaluate(fico.load_model("fico-example:example-dual", config="tiny"), corpus, cache=False)
    assert 0 <= report.instance["i2t"]["R@1"] <= 1
