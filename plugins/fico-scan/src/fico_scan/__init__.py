"""SCAN (Stacked Cross Attention) for fico-registry."""
