"""Registration only: imported at discovery time, so it imports nothing heavy."""

from fico_registry import Family, ModelSpec, OutputKind, hookimpl


@hookimpl
def fico_models(register):
    register(
        ModelSpec(
            name="example-dual",
            family=Family.FG,
            output=OutputKind.CONTINUOUS,
            dim=32,
            measure="cosine",
            image_input="pixels",
            text_input="text",
            factory="fico_example.model:build",  # imported only when the model is loaded
            configs={"default": {"dim": 32, "image_size": 32}, "tiny": {"dim": 8, "image_size": 16}},
            paper="(your paper)",
            license="MIT",
        )
    )
