"""tv3s: batch pseudo-labeling of video with TV3S (temporal state space sharing)."""

__version__ = "0.1.0"
