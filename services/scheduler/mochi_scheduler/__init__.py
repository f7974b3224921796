"""The fair-share scheduler (MOCHI_SCHEDULING=fair): docs/scheduling.md."""
