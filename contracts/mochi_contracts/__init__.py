"""Shared contracts of Mochi Serve: the job request, the events, the subjects and
the JetStream settings. Every service imports these; no service spells a subject."""
