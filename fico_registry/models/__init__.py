"""Built-in models (the reference dual encoder)."""
