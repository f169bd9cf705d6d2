"""VSRN (Visual Semantic Reasoning for Image-Text Matching) for fico-registry."""
