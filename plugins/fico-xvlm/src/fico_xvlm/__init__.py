"""X-VLM for fico-registry: see fico_xvlm.plugin for the model cards."""
