"""Source discovery and the format loaders, including every bad-input case."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import sqlite3
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import docx
import pytest

from ragtune.errors import SourceError
from ragtune.knowledge.sources import discover_sources
from ragtune.knowledge.types import LoadResult, SourceItem


def make_pdf(page_texts: list[str]) -> bytes:
    """A minimal valid PDF with one Helvetica text line per page."""
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", "", "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for text in page_texts:
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET"
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream")
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {len(objects)} 0 R "
                       "/Resources << /Font << /F1 3 0 R >> >> >>")
        kids.append(f"{len(objects)} 0 R")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>"
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


def discover_one(path: Path | str, **options) -> SourceItem:
    items, errors, _ = discover_sources([str(path)], **options)
    assert errors == [], [str(e) for e in errors]
    assert len(items) == 1
    return items[0]


def load_one(path: Path | str, **options) -> LoadResult:
    return discover_one(path, **options).load()


def load_error(path: Path | str, **options) -> SourceError:
    item = discover_one(path, **options)
    with pytest.raises(SourceError) as caught:
        item.load()
    assert caught.value.source == item.key
    return caught.value


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


# --- files and directories -------------------------------------------------------------------------------

def test_directory_is_walked_recursively_with_relative_posix_keys(tmp_path):
    write(tmp_path / "a.txt", "alpha text")
    write(tmp_path / "sub" / "deep" / "b.md", "# Bee\n\nbody")
    write(tmp_path / "sub" / "c.html", "<p>see</p>")
    write(tmp_path / ".hidden" / "d.txt", "hidden dir")
    write(tmp_path / ".e.txt", "hidden file")
    write(tmp_path / "notes.xyz", "unsupported, skipped silently")

    items, errors, _ = discover_sources([str(tmp_path)])

    assert errors == []
    assert [(item.key, item.kind) for item in items] == [("a.txt", "txt"), ("sub/c.html", "html"),
                                                        ("sub/deep/b.md", "md")]
    assert {item.root for item in items} == {str(tmp_path.resolve())}
    deep = items[2]
    assert deep.fingerprint == hashlib.sha256(b"# Bee\n\nbody").hexdigest()
    assert deep.size_bytes == len(b"# Bee\n\nbody")
    assert deep.load().documents[0].source == "sub/deep/b.md"


def test_single_file_is_keyed_by_name_under_its_parent(tmp_path):
    path = write(tmp_path / "docs" / "one.txt", "just one")
    item = discover_one(path)
    assert (item.key, item.root) == ("one.txt", str((tmp_path / "docs").resolve()))


def test_fingerprint_follows_content_and_discovery_does_not_parse(tmp_path):
    path = write(tmp_path / "broken.pdf", b"%PDF-1.4 not really a pdf")
    before = discover_one(path).fingerprint  # no error yet: parsing waits for load()
    write(path, b"%PDF-1.4 other bytes")
    assert discover_one(path).fingerprint != before


def test_text_and_markdown_keep_headings_and_take_a_title(tmp_path):
    md = load_one(write(tmp_path / "guide.md", "Intro line\n\n# Setup\n\nInstall it.\n")).documents[0]
    assert md.text == "Intro line\n\n# Setup\n\nInstall it.\n"
    assert md.title == "Setup"
    txt = load_one(write(tmp_path / "plain.txt", "\n\n  First line here  \nsecond")).documents[0]
    assert txt.title == "First line here"
    long = load_one(write(tmp_path / "long.txt", "x" * 500)).documents[0]
    assert len(long.title) == 200


def test_html_visible_text_headings_and_title(tmp_path):
    page = """<html><head><title>The Page</title><style>p {color: red}</style></head><body>
      <nav><a href="/">Home</a> | <a href="/x">Menu</a></nav>
      <h1>Main  heading</h1><p>First <b>bold</b>
         paragraph.</p><script>var hidden = 1;</script><!-- a comment -->
      <h3>Sub</h3><ul><li>one</li><li>two</li></ul></body></html>"""
    doc = load_one(write(tmp_path / "page.htm", page)).documents[0]
    assert doc.title == "The Page"
    assert doc.text == "# Main heading\n\nFirst bold paragraph.\n\n### Sub\n\none\ntwo"


def test_pdf_pages_are_joined_and_counted(tmp_path):
    doc = load_one(write(tmp_path / "paper.pdf", make_pdf(["Page one text", "Page two text"]))).documents[0]
    assert doc.text == "Page one text\n\nPage two text"
    assert doc.metadata == {"pages": 2}
    assert doc.title == "Page one text"


def test_docx_headings_paragraphs_and_tables(tmp_path):
    document = docx.Document()
    document.core_properties.title = "Handbook"
    document.add_heading("Overview", level=1)
    document.add_paragraph("The first paragraph.")
    document.add_heading("Details", level=2)
    table = document.add_table(rows=2, cols=2)
    for r, row in enumerate([("name", "value"), ("alpha", "1")]):
        for c, text in enumerate(row):
            table.cell(r, c).text = text
    path = tmp_path / "handbook.docx"
    document.save(str(path))

    doc = load_one(path).documents[0]
    assert doc.title == "Handbook"
    assert doc.text == "# Overview\n\nThe first paragraph.\n\n## Details\n\nname | value\nalpha | 1"


def test_csv_rows_use_the_text_column_or_all_columns(tmp_path):
    csv_text = 'id,title,text,lang\n7,Seven,"Row seven, quoted",en\n,,Row without id,\n'
    with_text = load_one(write(tmp_path / "a.csv", csv_text))
    assert [(d.part, d.title, d.text) for d in with_text.documents] == [
        ("7", "Seven", "Row seven, quoted"), ("2", "Row without id", "Row without id")]
    assert with_text.documents[0].metadata == {"lang": "en"}
    without = load_one(write(tmp_path / "b.csv", "city,population\nOslo,700000\n"))
    assert without.documents[0].text == "city: Oslo\npopulation: 700000"


def test_json_list_and_wrapped_list_with_ids_titles_and_bad_elements(tmp_path):
    records = [{"id": "r1", "title": "First", "text": "one", "lang": "en"}, {"text": "two"}, "not an object"]
    listed = load_one(write(tmp_path / "a.json", json.dumps(records)))
    assert [(d.part, d.title, d.text) for d in listed.documents] == [("r1", "First", "one"), ("2", "two", "two")]
    assert listed.documents[0].metadata == {"lang": "en"}
    assert listed.warnings == ["record 3: not an object but a JSON str, skipped"]
    wrapped = load_one(write(tmp_path / "b.json", json.dumps({"count": 1, "data": [{"body": "wrapped"}]})),
                       json_text_field="body")
    assert [d.text for d in wrapped.documents] == ["wrapped"]


def test_jsonl_skips_bad_lines_with_warnings(tmp_path):
    lines = ['{"id": 10, "text": "ten"}', "{not json", "", '{"content": "no text field"}', '{"text": "four"}']
    result = load_one(write(tmp_path / "data.jsonl", "\n".join(lines)))
    assert [(d.part, d.text) for d in result.documents] == [("10", "ten"), ("5", "four")]
    assert result.warnings[0].startswith("line 2: invalid JSON (")
    assert "line 4" in result.warnings[1] and "'text'" in result.warnings[1] and "--text-field" in result.warnings[1]


def test_jsonl_with_no_usable_line_is_an_error(tmp_path):
    error = load_error(write(tmp_path / "bad.jsonl", '{"content": "a"}\n{oops\n'))
    assert "no document" in error.message and "--text-field" in error.hint


# --- bad input ----------------------------------------------------------------------------------------------

def test_corrupt_pdf(tmp_path):
    truncated = make_pdf(["Some text"])[:120]
    error = load_error(write(tmp_path / "bad.pdf", truncated))
    assert "cannot read PDF" in error.message and "bad.pdf" in str(error)
    assert error.hint == "re-export the PDF or convert it to text"


def test_damaged_but_readable_pdf_loads_with_warnings(tmp_path, capsys):
    damaged = re.sub(rb"startxref\n\d+", b"startxref\n5", make_pdf(["Recovered text"]))
    result = load_one(write(tmp_path / "damaged.pdf", damaged))
    assert result.documents[0].text == "Recovered text"
    assert any("startxref" in warning for warning in result.warnings)
    assert capsys.readouterr().err == ""


def test_corrupt_docx(tmp_path):
    error = load_error(write(tmp_path / "bad.docx", b"PK\x03\x04 not a zip"))
    assert "cannot read Word document" in error.message


def test_binary_file_with_text_extension(tmp_path):
    error = load_error(write(tmp_path / "image.txt", bytes(range(256)) * 4))
    assert "looks like a binary file, not text" in error.message


@pytest.mark.parametrize("content", [b"", b"  \n\t \r\n"])
def test_empty_file(tmp_path, content):
    assert "empty" in load_error(write(tmp_path / "empty.md", content)).message


def test_non_utf8_text_is_decoded_with_a_warning(tmp_path):
    result = load_one(write(tmp_path / "legacy.txt", b"caf\xe9 au lait, cr\xe8me br\xfbl\xe9e"))
    assert result.documents[0].text == "café au lait, crème brûlée"
    assert len(result.warnings) == 1 and "cp1252" in result.warnings[0]


def test_utf16_with_bom_is_text_not_binary(tmp_path):
    result = load_one(write(tmp_path / "win.txt", "Grüße".encode("utf-16")))
    assert result.documents[0].text == "Grüße" and result.warnings == []


def test_file_over_the_size_limit_is_rejected_at_discovery(tmp_path):
    write(tmp_path / "big.txt", "x" * 3000)
    write(tmp_path / "small.txt", "fits")
    items, errors, _ = discover_sources([str(tmp_path)], max_file_mb=0.001)
    assert [item.key for item in items] == ["small.txt"]
    assert len(errors) == 1 and errors[0].source == "big.txt"
    assert "larger than the limit" in errors[0].message and "max_file_mb" in errors[0].hint


def test_50_mb_text_file_under_the_limit_loads(tmp_path):
    line = b"The quick brown fox jumps over the lazy dog. " * 20 + b"\n"
    path = write(tmp_path / "large.txt", line * (50 * 1024 * 1024 // len(line)))
    result = load_one(path)
    assert len(result.documents) == 1 and result.documents[0].text.startswith("The quick brown fox")
    assert len(result.documents[0].text) == path.stat().st_size


def test_nonexistent_path_and_unsupported_single_file(tmp_path):
    missing = tmp_path / "nope"
    unsupported = write(tmp_path / "archive.zip", b"PK")
    items, errors, unreadable = discover_sources([str(missing), str(unsupported), str(tmp_path)])
    assert items == [] and unreadable == [str(missing), str(unsupported)]  # the directory was read (it is empty)
    assert errors[0].source == str(missing) and "no such file" in errors[0].message and "check" in errors[0].hint
    assert errors[1].source == "archive.zip" and "unsupported file type '.zip'" in errors[1].message


def test_one_bad_file_does_not_affect_the_others(tmp_path):
    write(tmp_path / "bad.pdf", b"garbage")
    write(tmp_path / "good.txt", "good text")
    items, errors, _ = discover_sources([str(tmp_path)])
    assert errors == []
    outcomes = {}
    for item in items:
        try:
            outcomes[item.key] = item.load().documents[0].text
        except SourceError as exc:
            outcomes[item.key] = type(exc).__name__
    assert outcomes == {"bad.pdf": "SourceError", "good.txt": "good text"}


def test_repeated_paths_are_deduplicated_but_equal_keys_under_two_roots_are_kept(tmp_path):
    write(tmp_path / "one" / "README.md", "first")
    write(tmp_path / "two" / "README.md", "second")
    items, errors, _ = discover_sources([str(tmp_path / "one"), str(tmp_path / "two"), str(tmp_path / "one")])
    assert errors == []
    assert [(item.key, item.root) for item in items] == [("README.md", str((tmp_path / "one").resolve())),
                                                         ("README.md", str((tmp_path / "two").resolve()))]


# --- JSON web API --------------------------------------------------------------------------------------------

RECORDS = [{"id": 1, "title": "One", "text": "first record"}, {"id": 2, "text": "second record"}]
ROUTES = {"/records": (200, "application/json", json.dumps(RECORDS)),
          "/wrapped": (200, "application/json", json.dumps({"items": RECORDS})),
          "/page": (200, "text/html", "<html>not json</html>")}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server API)
        status, content_type, body = ROUTES.get(self.path, (404, "text/plain", "not found"))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def api(loopback):
    return loopback(_Handler)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("route", ["/records", "/wrapped"])
def test_json_api_records(api, route):
    url = api + route
    item = discover_one(url)
    assert (item.key, item.root, item.kind) == (url, url, "url")
    assert item.fingerprint == hashlib.sha256(ROUTES[route][2].encode()).hexdigest()
    documents = item.load().documents
    assert [(d.source, d.part, d.title, d.text) for d in documents] == [
        (url, "1", "One", "first record"), (url, "2", "second record", "second record")]


def test_json_api_errors(api):
    _, errors, _ = discover_sources([api + "/page", api + "/missing"])
    assert "not JSON" in errors[0].message and "text/html" in errors[0].message
    assert "404" in errors[1].message and errors[1].source == api + "/missing"


def test_unreachable_url(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api"
    items, errors, _ = discover_sources([url])
    assert items == [] and errors[0].source == url
    assert "cannot reach" in errors[0].message and "network" in errors[0].hint


# --- SQL -----------------------------------------------------------------------------------------------------

@pytest.fixture
def database(tmp_path):
    path = tmp_path / "db.sqlite"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE docs (id INTEGER, title TEXT, body TEXT)")
        connection.executemany("INSERT INTO docs VALUES (?, ?, ?)", [(1, "Alpha", "alpha body"), (2, None, "beta")])
    connection.close()
    return path


def test_sql_rows_become_documents(database):
    db_url = f"sqlite:///{database}"
    query = "SELECT id, title, body AS text FROM docs ORDER BY id"
    item = discover_one(db_url, sql_query=query)
    assert item.kind == "sql" and item.key.startswith(db_url + "#") and item.root == db_url
    assert discover_one(db_url, sql_query="  SELECT id, title, body AS text\n FROM docs ORDER BY id").key == item.key
    assert [(d.part, d.title, d.text) for d in item.load().documents] == [("1", "Alpha", "alpha body"),
                                                                         ("2", "beta", "beta")]
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE docs SET body = 'changed' WHERE id = 2")
    connection.close()
    assert discover_one(db_url, sql_query=query).fingerprint != item.fingerprint


def test_sql_query_is_passed_as_written(database):
    item = discover_one(f"sqlite:///{database}", sql_query="SELECT 'meet at 10:30 in :room' AS text")
    assert item.load().documents[0].text == "meet at 10:30 in :room"


def test_sql_without_text_column_joins_the_columns(database):
    item = discover_one(f"sqlite:///{database}", sql_query="SELECT title, body FROM docs WHERE id = 1")
    assert item.load().documents[0].text == "title: Alpha\nbody: alpha body"


def test_sql_errors(database, tmp_path):
    missing_db = tmp_path / "missing.sqlite"
    _, errors, _ = discover_sources([f"sqlite:///{database}"])
    assert "needs a SQL query" in errors[0].message
    _, errors, _ = discover_sources([f"sqlite:///{missing_db}"], sql_query="SELECT 1")
    assert "not found" in errors[0].message and not missing_db.exists()
    _, errors, _ = discover_sources([f"sqlite:///{database}"], sql_query="SELECT nope FROM docs")
    assert "query failed" in errors[0].message
