"""Deprecated path: use `fico_registry.plugin_api` (load_torch_checkpoint, strict_load_state_dict, ...).

docs/plugins.md once told plugin authors to import from here; it keeps working for the 0.1 series
with a DeprecationWarning, and goes away in 0.2.
"""

import warnings

from fico_registry.plugin_api.checkpoints import *  # noqa: F403
from fico_registry.plugin_api.checkpoints import load_torch_checkpoint, restricted_unpickle, strict_load_state_dict

__all__ = ["load_torch_checkpoint", "restricted_unpickle", "strict_load_state_dict"]

warnings.warn(
    "fico_registry.checkpoint_io moved: import load_torch_checkpoint / strict_load_state_dict from "
    "fico_registry.plugin_api (the plugin API); the old path goes away in fico-registry 0.2",
    DeprecationWarning,
    stacklevel=2,
)
