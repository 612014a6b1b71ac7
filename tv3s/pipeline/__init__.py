"""tv3s.pipeline."""
