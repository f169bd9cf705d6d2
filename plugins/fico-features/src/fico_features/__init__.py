"""Feature pipelines for fico-registry: VGG-19 fc7 (images) and Doc2Vec (captions)."""
