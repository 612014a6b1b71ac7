"""tv3s.jobs."""
