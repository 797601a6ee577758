"""bench/frames.py: the benchmarks' default image folder."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))

import frames  # noqa: E402


def test_downloaded_frames_come_first_then_the_copy_beside_the_repository(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / "data" / "simpsons_64").mkdir(parents=True)
    monkeypatch.setattr(frames, "REPO", str(repo))
    beside = os.path.join(str(repo), "..", "shared", "data", "simpsons_64")
    assert frames.default_frames() == beside  # An empty data/simpsons_64 (before --download) is not used.
    (repo / "data" / "simpsons_64" / "0.jpg").write_bytes(b"")
    assert frames.default_frames() == str(repo / "data" / "simpsons_64")
