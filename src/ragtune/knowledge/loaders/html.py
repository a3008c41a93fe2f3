"""HTML pages: visible text, with h1–h6 turned into markdown heading lines."""

from __future__ import annotations

import re

from bs4 import BeautifulSoup, NavigableString, Tag

from ragtune.knowledge.loaders.common import decode_text, guess_title
from ragtune.knowledge.types import LoadResult, RawDocument

_HIDDEN = ["script", "style", "nav", "noscript", "template", "head"]
_PARAGRAPHS = ["p", "pre", "blockquote", "table", "ul", "ol", "dl", "figure", "section", "article"]
_LINES = ["div", "li", "tr", "dt", "dd", "header", "footer", "main", "aside", "figcaption", "caption",
          "form", "hr", "address"]
_HEADINGS = [f"h{n}" for n in range(1, 7)]
_PARAGRAPH = "\u2029"  # marks a paragraph break until the text is assembled
_WHITESPACE = re.compile(r"\s+")


def load_html(data: bytes, source: str) -> LoadResult:
    """One document with the page's visible text; the title comes from <title> when there is one."""
    markup, warnings = decode_text(data, source)
    soup = BeautifulSoup(markup, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    text = html_to_text(soup)
    return LoadResult([RawDocument(source=source, text=text, title=title or guess_title(text))], warnings)


def html_to_text(soup: BeautifulSoup) -> str:
    """Visible text of a parsed page, one line per block element, headings as `#` lines."""
    for tag in _tags(soup, _HIDDEN):
        tag.decompose()
    for string in [node for node in soup.descendants if type(node) is NavigableString]:  # not comments/doctype
        if not any(parent.name == "pre" for parent in string.parents):
            squeezed = _WHITESPACE.sub(" ", string)
            if squeezed != string:
                string.replace_with(squeezed)
    for tag in _tags(soup, ["br"]):
        tag.replace_with("\n")
    for tag in _tags(soup, ["td", "th"]):
        tag.append(" ")
    for tag in _tags(soup, _HEADINGS):
        level = int(tag.name[1])
        tag.replace_with(f"{_PARAGRAPH}{'#' * level} {tag.get_text(' ', strip=True)}{_PARAGRAPH}")
    for tag in _tags(soup, _PARAGRAPHS + _LINES):
        separator = _PARAGRAPH if tag.name in _PARAGRAPHS else "\n"
        tag.insert_before(separator)
        tag.insert_after(separator)
    text = "\n".join(line.strip(" \t\r\f\v") for line in soup.get_text().split("\n"))
    text = re.sub(r"\n{2,}", "\n", text)
    return re.sub(rf"\s*(?:{_PARAGRAPH}\s*)+", "\n\n", text).strip()


def _tags(soup: BeautifulSoup, names: list[str]) -> list[Tag]:
    """The tags named `names`, in document order: `soup.find_all(names)` without bs4's generic matching cost."""
    wanted = set(names)
    return [node for node in soup.descendants if type(node) is Tag and node.name in wanted]
