"""Where the benchmarks read the 100 Simpsons frames unless --data names a folder."""

from __future__ import annotations

import glob
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def default_frames() -> str:
    """data/simpsons_64 in the repository (where `main.py --download` puts the frames) when it holds
    images, else the copy beside the repository that the development machines and CI keep
    (../shared/data/simpsons_64)."""
    downloaded = os.path.join(REPO, "data", "simpsons_64")
    if glob.glob(os.path.join(downloaded, "*.jpg")):
        return downloaded
    return os.path.join(REPO, "..", "shared", "data", "simpsons_64")
