"""Registration only: imported whenever models are listed, so it imports nothing heavy."""

from fico_registry.plugin_api import Family, ModelSpec, OutputKind, hookimpl


@hookimpl
def fico_models(register):
    register(
        ModelSpec(
            name="example-dual",
            family=Family.FG,
            output=OutputKind.CONTINUOUS,
            dim=32,  # the width of the default config
            measure="cosine",
            factory="fico_example.model:build",  # imported only when the model is loaded
            image_input="pixels",
            text_input="text",
            configs={"default": {"width": 32, "image_size": 32}, "tiny": {"width": 8, "image_size": 16}},
            paper="(your paper)",
            url="(your repository)",
            license="MIT",
        )
    )
