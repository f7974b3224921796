"""The webhook dispatcher: tells jobs' webhooks of their events, and expires
queued jobs whose deadline passed."""
