"""Experiments built on the evaluator: costs (encode / storage / attention time at scale) and
search (FAISS indexes against exhaustive search).

May import anything below it: errors, plugin_api, data, models, evaluator, results. Not cli.
"""
