"""The `rag` command: one entry point, a subcommand per job."""
