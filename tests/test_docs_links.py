"""Every relative link and image (markdown or <img>) in the README and docs/ points at a file that
exists, and every #anchor at a heading of that file, as GitHub renders them (headings of
docs/quality_log.md carry dates and results, so renaming one silently broke links before this test)."""
import functools
import os
import re

import pytest

from tests.conftest import REPO

LINK = re.compile(r"\]\(([^)\s]+)\)|<img src=\"([^\"]+)\"")  # markdown links and images, HTML images


def markdown_files():
    docs = sorted(os.path.join("docs", name) for name in os.listdir(os.path.join(REPO, "docs")) if name.endswith(".md"))
    return ["README.md", "data/README.md"] + docs


def github_slug(heading):
    """The id GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def heading_anchors(text):
    anchors, seen, in_code = set(), {}, False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        match = None if in_code else re.match(r"#+\s+(.*)", line)
        if match:
            slug = github_slug(match.group(1))
            anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")  # repeats get -1, -2, ...
            seen[slug] = seen.get(slug, 0) + 1
    return anchors


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


@functools.lru_cache(maxsize=None)
def anchors_of(path):
    """The heading ids of one file, parsed once however many links point into it."""
    return heading_anchors(read(path))


def test_github_slug_and_repeated_headings():
    text = "# Image quality: FID and KID\n## D's strength (2026-12-03, later)\n```\n# not a heading\n```\n## Notes\n## Notes\n"
    assert heading_anchors(text) == {"image-quality-fid-and-kid", "ds-strength-2026-12-03-later", "notes", "notes-1"}


@pytest.mark.parametrize("doc", markdown_files())
def test_relative_links_and_anchors_resolve(doc):
    source = os.path.join(REPO, doc)
    broken = []
    for target in (markdown or html for markdown, html in LINK.findall(read(source))):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = os.path.normpath(os.path.join(os.path.dirname(source), path)) if path else source
        if not os.path.exists(dest):
            broken.append(f"{target} (no such file)")
        elif anchor and dest.endswith(".md") and anchor not in anchors_of(dest):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{doc}: " + "; ".join(broken)
