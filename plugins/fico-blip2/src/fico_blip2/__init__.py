"""BLIP-2 retrieval models (LAVIS / transformers weights) for fico-registry."""
