"""CLI command modules. Each imports ``app`` from :mod:`monet_cli.cli` and registers its
commands; heavy imports stay inside the command functions so ``monet --help`` stays fast.
``cli.py`` imports the modules listed in ``MODULES``."""

MODULES = ("plan", "xmp", "models", "evaluate", "puzzles", "train", "review")
