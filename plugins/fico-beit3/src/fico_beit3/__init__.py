"""BEiT-3 image-text retrieval for fico-registry."""
