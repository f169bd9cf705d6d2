"""`fico_registry.testing`: the conformance kit, kept at the path plugin authors have been using.

The kit lives in fico_registry.plugin_api.testing (the plugin API); this module re-exports it so
`from fico_registry.testing import check_model` keeps working.
"""

from fico_registry.plugin_api.testing import *  # noqa: F403
from fico_registry.plugin_api.testing import __all__  # noqa: F401
