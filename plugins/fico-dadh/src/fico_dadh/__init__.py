"""DADH for fico-registry: the GEN hashing networks on features, checkpoint reader, training recipe."""
