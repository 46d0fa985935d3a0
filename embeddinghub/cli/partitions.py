"""CLI commands: partitions (see embeddinghub.cli.base for the shared parts)."""
