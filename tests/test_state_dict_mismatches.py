"""state_dict_mismatches / strict_load_state_dict: every reason a state dict does not fit, named."""

from __future__ import annotations

import pytest
import torch

from fico_registry.errors import CheckpointError
from fico_registry.plugin_api import state_dict_mismatches, strict_load_state_dict


def _net() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))


def test_a_fitting_state_dict_has_no_mismatches():
    net = _net()
    assert state_dict_mismatches(net.state_dict(), _net().state_dict()) == []


def test_missing_unexpected_and_shapes_each_get_a_part():
    state = _net().state_dict()
    state.pop("1.bias")
    state["2.weight"] = torch.zeros(1)
    state["0.weight"] = torch.zeros(5, 3)
    assert state_dict_mismatches(_net().state_dict(), state) == [
        "missing keys: 1.bias",
        "unexpected keys: 2.weight",
        "shape mismatches: 0.weight: checkpoint (5, 3) vs model (4, 3)",
    ]


def test_optional_keys_may_be_absent_and_sides_name_the_shapes():
    state = _net().state_dict()
    state.pop("1.bias")
    state["0.bias"] = torch.zeros(7)
    parts = state_dict_mismatches(_net().state_dict(), state, optional={"1.bias"}, sides=("file", "network"))
    assert parts == ["shape mismatches: 0.bias: file (7,) vs network (4,)"]


def test_long_lists_are_cut():
    expected = {f"k{i}": torch.zeros(1) for i in range(12)}
    (part,) = state_dict_mismatches(expected, {})
    assert part == "missing keys: " + ", ".join(f"k{i}" for i in range(10)) + " ..."


def test_strict_load_raises_with_the_parts_and_loads_when_it_fits():
    net, source = _net(), _net()
    strict_load_state_dict(net, source.state_dict(), what="ckpt")
    assert torch.equal(net[0].weight, source[0].weight)
    bad = source.state_dict()
    bad.pop("0.bias")
    with pytest.raises(CheckpointError, match=r"^ckpt does not match the architecture: missing keys: 0\.bias$"):
        strict_load_state_dict(net, bad, what="ckpt")


def test_saved_options_of_a_namespace_or_a_dict():
    import argparse

    from fico_registry.plugin_api import saved_options

    assert saved_options(argparse.Namespace(embed_size=8, bi_gru=True), where="ck") == {"embed_size": 8, "bi_gru": True}
    assert saved_options({"a": 1}, where="ck") == {"a": 1}
    with pytest.raises(
        CheckpointError, match=r"^ck: checkpoint\['opt'\] is NoneType, not the argparse.Namespace train.py"
    ):
        saved_options(None, where="ck", saved_by="train.py")
