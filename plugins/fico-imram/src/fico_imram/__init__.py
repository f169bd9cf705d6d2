"""IMRAM (Iterative Matching with Recurrent Attention Memory) for fico-registry."""
