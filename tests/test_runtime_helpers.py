"""runtime.devices and runtime.distributed: the one device resolution and the one process-group set-up."""

from __future__ import annotations

import pytest
import torch

from fico_registry.errors import ConfigError, DeviceError, OptionError
from fico_registry.runtime import distributed
from fico_registry.runtime.devices import resolve_device


def test_resolve_device_returns_a_torch_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == torch.device(expected) and resolve_device(None) == torch.device(expected)


@pytest.mark.parametrize("bad", ["gpu0", "xpu", "cuda:999"])
def test_bad_devices_are_option_and_config_errors(bad):
    if bad == "cuda:999" and not torch.cuda.is_available():
        bad = "cuda"  # no CUDA here: any cuda device is refused
    with pytest.raises(DeviceError) as caught:
        resolve_device(bad)
    # the evaluator raised OptionError and load_model ConfigError for these: both still catch it
    assert isinstance(caught.value, OptionError) and isinstance(caught.value, ConfigError)
    assert "cpu" in str(caught.value)


def test_load_model_refuses_an_unknown_device():
    from fico_registry.models.loading import load_model

    with pytest.raises(ConfigError, match="unknown device"):
        load_model("reference-dual", config="tiny", device="gpu0")


def test_old_homes_still_import():
    from fico_registry.evaluator import sharded
    from fico_registry.evaluator.options import checked_device

    assert sharded.rank is distributed.rank and sharded.local is distributed.local
    assert sharded.init_if_launched is distributed.init_if_launched and sharded.split is distributed.split
    assert checked_device("cpu") == torch.device("cpu")


def test_training_join_without_rendezvous_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for key in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    assert distributed.launched_by_torchrun()
    with pytest.raises(ConfigError, match="torchrun"):
        distributed.init_process_group("cpu")


def test_helpers_outside_a_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert distributed.rank() == 0 and distributed.world_size() == 1 and distributed.is_main_process()
    assert distributed.broadcast_object({"best": True}) == {"best": True}
    distributed.barrier()  # no group: nothing to wait for
    distributed.destroy()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match="not an integer"):
        distributed.launched()
