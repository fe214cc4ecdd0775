"""Command-line entry points (installed as the ``tvt_scripts`` package; console commands in pyproject.toml)."""
