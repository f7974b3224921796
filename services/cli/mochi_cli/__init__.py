"""The `mochi` command: run a service, the whole stack, or submit a job."""
