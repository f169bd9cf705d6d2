"""An example fico-registry plugin."""
