"""The GPU runner: pulls submitted jobs, renders them with Mochi-1, stores the MP4."""
