"""ADV (Li et al., ICME 2021): adversarially-learned hash codes for fine-grained visual-text search."""
