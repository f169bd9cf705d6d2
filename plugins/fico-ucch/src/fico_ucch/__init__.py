"""UCCH for fico-registry: feature-mode hashing networks, checkpoint reader, training recipe."""
