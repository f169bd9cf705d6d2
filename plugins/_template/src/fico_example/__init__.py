"""fico-example: a fico-registry model plugin."""
