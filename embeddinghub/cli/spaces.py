"""CLI commands: spaces (see embeddinghub.cli.base for the shared parts)."""
