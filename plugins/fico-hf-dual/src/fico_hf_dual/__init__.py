"""fico-registry plugin: transformers dual encoders (CLIP, ALIGN, AltCLIP, GroupViT)."""
