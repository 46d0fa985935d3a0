"""CLI commands: data (see embeddinghub.cli.base for the shared parts)."""
