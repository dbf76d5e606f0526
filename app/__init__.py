"""The perflaw service: settings, database, storage, REST routes, auth and the CLI."""
