"""Running a model on a corpus: load it from its card, give it its inputs, encode through the cache;
the built-in reference dual encoder lives here too.

May import: fico_registry.errors, plugin_api, data. Not the evaluator, results, studies or cli.
"""
