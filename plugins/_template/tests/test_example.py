from fico_registry.plugin_api.testing import check_model


def test_example_conforms():
    check_model("example-dual")
