"""CLI commands: server (see embeddinghub.cli.base for the shared parts)."""
