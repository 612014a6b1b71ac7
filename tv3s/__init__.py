"""tv3s: batch pseudo-labeling of video with TV3S (temporal state space sharing)."""

from pathlib import Path

__version__ = "0.1.0"

# The small TV3S trained on synthetic driving scenes that ships with the package (README:
# "Demo checkpoint" says how to reproduce it).
DEMO_CHECKPOINT = Path(__file__).resolve().parent / "assets" / "tv3s-demo-synthetic.pth"
