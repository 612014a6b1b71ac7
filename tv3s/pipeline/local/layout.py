"""Where `tv3s segment` puts its outputs inside an output folder, and how reruns treat them.

One place for the names, so the writer, the tests and later consumers of the
pseudo-labels agree on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class OutputExistsError(FileExistsError):
    """The output folder already holds results; the message says how to proceed."""


@dataclass(frozen=True)
class OutputLayout:
    """DIR/masks/{frame:06d}.png, DIR/overlay/{frame:06d}.jpg, DIR/preview.png, DIR/summary.json."""

    root: Path

    @property
    def masks(self) -> Path:
        return self.root / "masks"

    @property
    def overlays(self) -> Path:
        return self.root / "overlay"

    @property
    def preview(self) -> Path:
        return self.root / "preview.png"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    def mask(self, frame: int) -> Path:
        return self.masks / f"{frame:06d}.png"

    def overlay(self, frame: int) -> Path:
        return self.overlays / f"{frame:06d}.jpg"

    def existing_results(self) -> list[Path]:
        """Files a previous run wrote here (other files in the folder are not ours to judge)."""
        found = [p for p in (self.preview, self.summary) if p.is_file()]
        if self.masks.is_dir():
            found += sorted(self.masks.glob("*.png"))
        if self.overlays.is_dir():
            found += sorted(self.overlays.glob("*.jpg"))
        return found

    def prepare(self, overwrite: bool, overlays: bool = True) -> None:
        """Create the folders; refuse to mix with an earlier run's files unless `overwrite`.

        Stale masks from a longer earlier run would silently join the new
        pseudo-labels, so they are either refused or deleted (only our own
        files: masks/*.png, overlay/*.jpg, preview.png, summary.json).
        """
        old = self.existing_results()
        if old and not overwrite:
            raise OutputExistsError(
                f"{self.root} already holds results of an earlier run ({len(old)} files, e.g. {old[0].name}); "
                "pass --overwrite to replace them or choose another --out folder."
            )
        for path in old:
            path.unlink()
        self.masks.mkdir(parents=True, exist_ok=True)
        if overlays:
            self.overlays.mkdir(exist_ok=True)
