"""Unit tier: pure functions only, no processes, sockets or servers.
A package, so its modules and conftest never shadow those in tests/."""
