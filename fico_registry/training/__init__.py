"""Training recipes' shared machinery: seeding, atomic checkpoints, model selection, run records.

The recipes themselves live in the model plugins (hook `fico_trainers`); `fico train` is in
`fico_registry.cli.train`. Nothing heavy is imported here.
"""
