"""The catalog: projects job events into SQLite and answers job queries over NATS."""
