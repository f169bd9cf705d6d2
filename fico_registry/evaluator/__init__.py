"""The standard evaluator, in data-flow order: evaluate -> similarity / query_time (score sources) ->
engine (streamed ranking under a memory budget) -> metrics (exact under ties) -> report;
sharded is the same evaluator over torch.distributed ranks.

May import: fico_registry.errors, plugin_api, data, models. Not results, leaderboard, studies or cli.
"""
