"""The standard evaluator, in data-flow order: evaluate (entry points; checks, options, model_runs)
-> similarity / query_time (score sources) -> evaluate_sources (both directions, one Report) ->
engine (streamed ranking under a memory budget) -> metrics (exact under ties) -> report;
seam picks where it runs: one process, or sharded over torch.distributed ranks (shard_collectives).

May import: fico_registry.errors, plugin_api, data, models. Not results, leaderboard, studies or cli.
"""
