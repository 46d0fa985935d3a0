"""CLI commands: versions (see embeddinghub.cli.base for the shared parts)."""
