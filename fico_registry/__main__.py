"""`python -m fico_registry` (also what torchrun launches)."""

from .cli import main

if __name__ == "__main__":
    main()
