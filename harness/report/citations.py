"""Sources as links: every citation resolves to a document the site carries or to a URL.

Stored source texts name papers (``arXiv 2112.04488``), repositories (``github.com/saturnian77/DRSAN``,
``github laoyangui/HSPAN``) and the project's own notes (``shared/specs/fidelity-notes.md``: kept in the
repository as ``docs/specs/``). :func:`segments` splits a text into plain and linked pieces.
"""

from __future__ import annotations

import re

from harness.paths import repo_file

# Project notes the stored sources cite, by the path they are cited under → the repository copy.
CITED_DOCS = {
    "shared/specs/fidelity-notes.md": "docs/specs/fidelity-notes.md",
    "shared/specs/drsan.md": "docs/specs/drsan.md",
    "shared/published/README.md": "docs/published-sources.md",
    "docs/specs/fidelity-notes.md": "docs/specs/fidelity-notes.md",
    "docs/specs/drsan.md": "docs/specs/drsan.md",
    "docs/published-sources.md": "docs/published-sources.md",
    "docs/design.md": "docs/design.md",
}
_PATTERN = re.compile(
    r"(?P<arxiv>arXiv[ :](?P<arxiv_id>\d{4}\.\d{4,5}))"
    r"|(?P<github>github(?:\.com/| )(?P<repo>[A-Za-z0-9_.-]+/[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*))"
    r"|(?P<doc>(?:\.\./)?(?P<doc_path>" + "|".join(re.escape(k) for k in CITED_DOCS) + r"))"
)


def doc_page(repo_path: str) -> str:
    """The site page that shows the repository document ``repo_path``."""
    return (
        "doc-" + re.sub(r"[^A-Za-z0-9]+", "-", repo_path.removeprefix("docs/").removesuffix(".md")) + ".html"
    )


def segments(text: str) -> list[dict]:
    """``text`` as pieces ``{"text", "href"}`` (href "" for plain text)."""
    out, at = [], 0
    for m in _PATTERN.finditer(text):
        if m.start() > at:
            out.append({"text": text[at : m.start()], "href": ""})
        if m.group("arxiv"):
            href = f"https://arxiv.org/abs/{m.group('arxiv_id')}"
        elif m.group("github"):
            href = f"https://github.com/{m.group('repo')}"
        else:
            repo_path = CITED_DOCS[m.group("doc_path")]
            out.append({"text": repo_path, "href": doc_page(repo_path)})
            at = m.end()
            continue
        out.append({"text": m.group(0), "href": href})
        at = m.end()
    if at < len(text):
        out.append({"text": text[at:], "href": ""})
    return out


def documents() -> list[dict]:
    """The cited repository documents: {repo_path, page, text}; a missing one raises naming it."""
    docs = []
    for repo_path in sorted(set(CITED_DOCS.values())):
        path = repo_file(repo_path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: a document the site cites is missing from the repository")
        docs.append(
            {"repo_path": repo_path, "page": doc_page(repo_path), "text": path.read_text(encoding="utf-8")}
        )
    return docs
