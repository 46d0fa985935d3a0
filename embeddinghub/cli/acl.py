"""CLI commands: acl (see embeddinghub.cli.base for the shared parts)."""
