from fico_registry.testing import check_model


def test_example_conforms():
    check_model("example-dual")
