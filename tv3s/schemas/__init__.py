"""tv3s.schemas."""
