"""`python -m fico_registry` (also what torchrun launches)."""

from fico_registry.cli.main import main

if __name__ == "__main__":
    main()
