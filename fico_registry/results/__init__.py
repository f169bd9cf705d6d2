"""Results: the versioned, validated record of one evaluation run (`RunResult`) and its exporters.

May import: errors, plugin_api, data, models, evaluator. Not leaderboard, studies or cli.
"""

from fico_registry.results.record import (
    RunResult,
    Settings,
    from_report,
    read_result,
    write_clip_benchmark,
    write_mteb,
)

__all__ = ["RunResult", "Settings", "from_report", "read_result", "write_clip_benchmark", "write_mteb"]
