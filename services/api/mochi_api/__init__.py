"""The HTTP API: submit, read, list, download and cancel jobs."""
