"""fico-registry plugin: CLIP-family dual encoders through open_clip."""
