def register(subparsers):
    """Placeholder: the runner subcommands land here."""
