def register(subparsers):
    """Placeholder: the bench subcommands land here."""
