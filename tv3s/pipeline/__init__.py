"""The data plane: archive in, label maps and statistics out.

Sub-packages, by job (data flows top to bottom):

- `storage` — every byte in or out through fsspec (local paths and ``s3://``), with one
  retry policy and URLs redacted before they reach any message.
- `ingest` — reading the archive: tar headers (`tarscan`), WebDataset samples, the index
  and its plan of videos, ranged fetches, the one decoder, the model's resize rule, and
  one video's frames in order (`chunks`); `pack` writes shards from video files.
- `outputs` — writing and reading what a job produces: the commit protocol, the
  ``frames`` / ``videos`` / ``errors`` tables, label maps as PNG, statistics,
  compaction, SQL queries, exports to training shards and rendered overlays.
- `local` — `tv3s segment`: one video file or frame folder on this machine.
- `synthetic` — synthetic driving scenes with exact ground truth, as videos, shards and
  training data, and the held-out evaluation of a model on them.
- `evaluation` — mIoU and video consistency against ground truth.
"""
