"""The `shipyard` command line: thin commands over the SDK."""
