"""Build the code-calls evaluation set: API docs from real docstrings, and questions answered by one call.

Run from the repository root with the project's virtual environment (numpy must be importable):

    python tests/data/code_calls/build.py

It writes `docs/<module>.md` (one Markdown document per module: a heading per function with its signature,
the opening paragraphs of its docstring and its first doctest example, if any) and `questions.jsonl`
(`id`, `question`, `answer`, `source`). Every answer is evaluated here before anything is written, and every
answered function must be documented in its source document, so a broken row fails the build.
"""

from __future__ import annotations

import decimal
import hashlib
import importlib
import inspect
import itertools
import json
import math
import os
import re
import statistics
import sys
import textwrap
import urllib.parse
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DOCS = HERE / "docs"
QUESTIONS = HERE / "questions.jsonl"
MAX_DESCRIPTION = 600  # characters of docstring text kept per function (whole paragraphs; at least the first)

# module (as imported) -> (name shown in the docs, functions documented: attribute paths inside the module)
MODULES: dict[str, tuple[str, list[str]]] = {
    "statistics": ("statistics", ["mean", "median", "mode", "stdev", "harmonic_mean", "quantiles"]),
    "os.path": ("os.path", ["join", "splitext", "basename", "dirname", "normpath", "relpath"]),
    "json": ("json", ["dumps", "loads", "dump", "load", "JSONDecoder.raw_decode", "JSONEncoder.encode"]),
    "re": ("re", ["sub", "findall", "split", "fullmatch", "escape", "search"]),
    "hashlib": ("hashlib", ["sha256", "md5", "sha1", "blake2b", "pbkdf2_hmac", "new"]),
    "textwrap": ("textwrap", ["wrap", "fill", "shorten", "dedent", "indent", "TextWrapper"]),
    "itertools": ("itertools", ["combinations", "permutations", "product", "chain", "accumulate", "pairwise"]),
    "math": ("math", ["gcd", "comb", "isclose", "log", "dist", "prod"]),
    "urllib.parse": ("urllib.parse", ["urlparse", "urlencode", "quote", "unquote", "parse_qs", "urljoin"]),
    "numpy": ("np", ["linspace", "arange", "clip", "unique", "cumsum", "argsort"]),
}

# (source document, question, answer): each question states its argument values, so one call answers it.
# Questions may name the variables `text` and `obj`; SAMPLES gives them values when the answers are checked.
ROWS: list[tuple[str, str, str]] = [
    # statistics
    ("statistics", "How do I get the median of the list [3, 1, 4, 1, 5] with the statistics module?",
     "statistics.median([3, 1, 4, 1, 5])"),
    ("statistics", "Using the statistics module, compute the arithmetic mean of the numbers 2, 4, 6 and 8.",
     "statistics.mean([2, 4, 6, 8])"),
    ("statistics", "Which statistics call returns the most common value in ['red', 'blue', 'red', 'green']?",
     "statistics.mode(['red', 'blue', 'red', 'green'])"),
    ("statistics", "What is the call for the sample standard deviation of [2, 4, 4, 4, 5, 5, 7, 9] "
                   "with the statistics module?",
     "statistics.stdev([2, 4, 4, 4, 5, 5, 7, 9])"),
    ("statistics", "How can I compute the harmonic mean of the speeds 40, 60 and 120 using the statistics module?",
     "statistics.harmonic_mean([40, 60, 120])"),
    ("statistics", "Using the statistics module, how do I split the data 1 through 10 (the list [1, 2, 3, 4, 5, 6, "
                   "7, 8, 9, 10]) into quartiles, i.e. get the 3 cut points for n=4?",
     "statistics.quantiles([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], n=4)"),
    # os.path
    ("os.path", "How do I build the path data/raw/x.csv from the parts 'data', 'raw' and 'x.csv' with os.path?",
     "os.path.join('data', 'raw', 'x.csv')"),
    ("os.path", "With os.path, how do I split 'report.tar.gz' into its root and its last extension?",
     "os.path.splitext('report.tar.gz')"),
    ("os.path", "How do I get just the file name 'notes.txt' out of the path '/home/user/notes.txt' using os.path?",
     "os.path.basename('/home/user/notes.txt')"),
    ("os.path", "Which os.path call gives the directory part of '/home/user/notes.txt'?",
     "os.path.dirname('/home/user/notes.txt')"),
    ("os.path", "How do I clean up the path 'a//b/./c/../d' by collapsing redundant separators and up-level "
                "references with os.path?",
     "os.path.normpath('a//b/./c/../d')"),
    ("os.path", "Using os.path, how do I express '/srv/app/static/logo.png' relative to the directory '/srv/app'?",
     "os.path.relpath('/srv/app/static/logo.png', '/srv/app')"),
    # json
    ("json", "How do I serialize the dict in the variable obj to a JSON string with 2-space indentation and "
             "sorted keys?",
     "json.dumps(obj, indent=2, sort_keys=True)"),
    ("json", "How do I turn {'a': 1, 'b': [1, 2]} into the most compact JSON string, with no spaces after "
             "commas or colons?",
     "json.dumps({'a': 1, 'b': [1, 2]}, separators=(',', ':'))"),
    ("json", "How do I encode {'city': 'Zürich'} as JSON while keeping the non-ASCII character as is instead of "
             "a \\u escape?",
     "json.dumps({'city': 'Zürich'}, ensure_ascii=False)"),
    ("json", "How do I parse the JSON text '{\"a\": 1, \"b\": [true, null]}' into a Python object?",
     "json.loads('{\"a\": 1, \"b\": [true, null]}')"),
    ("json", "How do I parse the JSON text '{\"price\": 1.10}' so that the number becomes a decimal.Decimal "
             "instead of a float?",
     "json.loads('{\"price\": 1.10}', parse_float=decimal.Decimal)"),
    ("json", "With a json.JSONDecoder, how do I decode the JSON object at the start of '{\"a\": 1} trailing text' "
             "and get back where it ended?",
     "json.JSONDecoder().raw_decode('{\"a\": 1} trailing text')"),
    # re
    ("re", "How do I collapse every run of whitespace in the string variable text into a single space with re?",
     r"re.sub(r'\s+', ' ', text)"),
    ("re", "Which re call returns all the runs of digits in 'a1b22c333' as a list of strings?",
     r"re.findall(r'\d+', 'a1b22c333')"),
    ("re", "How do I split 'one, two;three' on a comma or semicolon followed by optional spaces using re?",
     r"re.split(r'[,;]\s*', 'one, two;three')"),
    ("re", "How do I check that the whole string '2024-05-01' matches the pattern \\d{4}-\\d{2}-\\d{2} with re?",
     r"re.fullmatch(r'\d{4}-\d{2}-\d{2}', '2024-05-01')"),
    ("re", "How do I escape the special characters in 'a.b*c' so it can be matched literally in a regex?",
     "re.escape('a.b*c')"),
    ("re", "How do I search for 'error' in 'Disk ERROR on sda' ignoring case with the re module?",
     "re.search('error', 'Disk ERROR on sda', re.IGNORECASE)"),
    # hashlib
    ("hashlib", "How do I get the SHA-256 hex digest of the bytes b'abc' with hashlib?",
     "hashlib.sha256(b'abc').hexdigest()"),
    ("hashlib", "What is the hashlib call for the MD5 checksum, as a hex string, of b'hello'?",
     "hashlib.md5(b'hello').hexdigest()"),
    ("hashlib", "How do I compute the SHA-1 hex digest of b'hello' using hashlib?",
     "hashlib.sha1(b'hello').hexdigest()"),
    ("hashlib", "How do I get a 16-byte BLAKE2b hash of b'data' as a hex string with hashlib?",
     "hashlib.blake2b(b'data', digest_size=16).hexdigest()"),
    ("hashlib", "How do I derive a key from the password b'password' and salt b'salt' with PBKDF2-HMAC-SHA256 "
                "and 100000 iterations in hashlib?",
     "hashlib.pbkdf2_hmac('sha256', b'password', b'salt', 100000)"),
    ("hashlib", "How do I create a hash object by the algorithm name 'sha512' for b'abc' and get its hex digest "
                "with hashlib?",
     "hashlib.new('sha512', b'abc').hexdigest()"),
    # textwrap
    ("textwrap", "How do I wrap 'The quick brown fox jumps over the lazy dog' into a list of lines at most 20 "
                 "characters wide with textwrap?",
     "textwrap.wrap('The quick brown fox jumps over the lazy dog', width=20)"),
    ("textwrap", "How do I reformat 'The quick brown fox jumps over the lazy dog' into a single string of lines "
                 "no wider than 15 characters using textwrap?",
     "textwrap.fill('The quick brown fox jumps over the lazy dog', width=15)"),
    ("textwrap", "How do I truncate 'Hello world, this is a long sentence' to fit in 20 characters, ending with "
                 "'...', using textwrap?",
     "textwrap.shorten('Hello world, this is a long sentence', width=20, placeholder='...')"),
    ("textwrap", "How do I remove the common leading whitespace from '    x = 1\\n    y = 2\\n' with textwrap?",
     "textwrap.dedent('    x = 1\\n    y = 2\\n')"),
    ("textwrap", "How do I add the prefix '> ' to the start of every line of 'a\\nb\\n' using textwrap?",
     "textwrap.indent('a\\nb\\n', '> ')"),
    ("textwrap", "How do I wrap the string 'supercalifragilistic word' to width 10 without breaking the long "
                 "word apart, using textwrap?",
     "textwrap.wrap('supercalifragilistic word', width=10, break_long_words=False)"),
    # itertools
    ("itertools", "How do I list every 2-element combination of [1, 2, 3, 4] with itertools?",
     "list(itertools.combinations([1, 2, 3, 4], 2))"),
    ("itertools", "Which itertools call lists all ordered arrangements of 2 letters taken from 'abc'?",
     "list(itertools.permutations('abc', 2))"),
    ("itertools", "How do I generate all 3-bit tuples of 0 and 1 (the Cartesian product of [0, 1] with itself "
                  "three times) using itertools?",
     "list(itertools.product([0, 1], repeat=3))"),
    ("itertools", "How do I concatenate the lists [1, 2], [3] and [4, 5] into one sequence with itertools?",
     "list(itertools.chain([1, 2], [3], [4, 5]))"),
    ("itertools", "How do I get the running totals of [1, 2, 3, 4] using itertools?",
     "list(itertools.accumulate([1, 2, 3, 4]))"),
    ("itertools", "How do I get the overlapping consecutive pairs of [1, 2, 3, 4] with itertools?",
     "list(itertools.pairwise([1, 2, 3, 4]))"),
    # math
    ("math", "How do I find the greatest common divisor of 48 and 180 with the math module?",
     "math.gcd(48, 180)"),
    ("math", "How many ways are there to choose 3 items from 10 without order? Give the math module call.",
     "math.comb(10, 3)"),
    ("math", "With the math module, how do I check whether 0.1 + 0.2 and 0.3 are approximately equal?",
     "math.isclose(0.1 + 0.2, 0.3)"),
    ("math", "How do I compute the logarithm of 8 to base 2 using the math module?",
     "math.log(8, 2)"),
    ("math", "How do I compute the Euclidean distance between the points (1, 2) and (4, 6) with the math "
             "module?",
     "math.dist((1, 2), (4, 6))"),
    ("math", "Which math function multiplies together all the numbers in [2, 3, 4]?",
     "math.prod([2, 3, 4])"),
    # urllib.parse
    ("urllib.parse", "How do I split the URL 'https://example.com:8080/path?q=1#frag' into scheme, network "
                     "location, path, query and fragment with urllib.parse?",
     "urllib.parse.urlparse('https://example.com:8080/path?q=1#frag')"),
    ("urllib.parse", "How do I build the query string for {'q': 'red shoes', 'page': 2} using urllib.parse?",
     "urllib.parse.urlencode({'q': 'red shoes', 'page': 2})"),
    ("urllib.parse", "How do I percent-encode the string 'a b&c' for use in a URL path with urllib.parse?",
     "urllib.parse.quote('a b&c')"),
    ("urllib.parse", "How do I decode the percent-escapes in 'caf%C3%A9%20au%20lait' with urllib.parse?",
     "urllib.parse.unquote('caf%C3%A9%20au%20lait')"),
    ("urllib.parse", "How do I parse the query string 'a=1&b=2&a=3' into a dict of lists with urllib.parse?",
     "urllib.parse.parse_qs('a=1&b=2&a=3')"),
    ("urllib.parse", "How do I resolve the relative link 'api.html' against the base URL "
                     "'https://example.com/docs/guide.html' using urllib.parse?",
     "urllib.parse.urljoin('https://example.com/docs/guide.html', 'api.html')"),
    # numpy
    ("numpy", "How do I get 5 evenly spaced numbers from 0 to 1 inclusive with NumPy (imported as np)?",
     "np.linspace(0, 1, 5)"),
    ("numpy", "How do I create the array of even numbers from 0 up to but not including 10, in steps of 2, "
              "with NumPy (np)?",
     "np.arange(0, 10, 2)"),
    ("numpy", "How do I limit the values of [1, 5, 10, 15] to the interval from 2 to 12 with NumPy (np)?",
     "np.clip([1, 5, 10, 15], 2, 12)"),
    ("numpy", "How do I get the distinct values of [3, 1, 2, 3, 1] together with how often each occurs, using "
              "NumPy (np)?",
     "np.unique([3, 1, 2, 3, 1], return_counts=True)"),
    ("numpy", "How do I compute the cumulative sum of [1, 2, 3, 4] with NumPy (np)?",
     "np.cumsum([1, 2, 3, 4])"),
    ("numpy", "Which NumPy (np) call returns the indices that would sort [30, 10, 20]?",
     "np.argsort([30, 10, 20])"),
]

SAMPLES = {"text": "a  b\t\n c", "obj": {"b": 1, "a": [1, 2]}}


def doc_name(module: str) -> str:
    return f"{module}.md"


def signature(obj, shown: str) -> str:
    """`shown(params)`, from inspect.signature, else from a signature-like first docstring line, else `shown(...)`."""
    try:  # default values that are objects print with their address: drop it, so rebuilds are identical
        return re.sub(r" at 0x[0-9a-fA-F]+>", ">", f"{shown}{inspect.signature(obj)}")
    except (TypeError, ValueError):
        pass
    first = (inspect.getdoc(obj) or "").split("\n", 1)[0]
    match = re.match(r"^[\w.]+(\(.*\))", first)
    if match:
        return f"{shown}{match.group(1)}"
    return f"{shown}(...)"


# a docstring line that is only a signature: "log(x, [base=math.e])", "chain(*iterables) --> chain object"
SIGNATURE_LINE = re.compile(r"[\w.]+\(.*\)(\s*(->|-->)\s*[\w. ]+)?")


def _underlined(paragraph: str, marks: str) -> bool:
    """An reST/numpydoc heading: a line underlined with `marks` ("Parameters\\n----------", "NumPy\\n=====")."""
    lines = paragraph.splitlines()
    return len(lines) >= 2 and bool(lines[1].strip()) and set(lines[1].strip()) <= set(marks)


def description(doc: str) -> str:
    """Whole paragraphs from the start of the docstring, up to MAX_DESCRIPTION characters (at least one)."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", doc) if p.strip()]
    kept: list[str] = []
    for paragraph in paragraphs:
        if not kept and _underlined(paragraph, "="):  # a document title ("NumPy\n=====")
            continue
        if paragraph.startswith(">>>") or _underlined(paragraph, "-"):  # examples or a numpydoc section
            break
        first, _, rest = paragraph.partition("\n")
        if SIGNATURE_LINE.fullmatch(first.strip()):  # a signature line, already shown above the text
            paragraph = rest.strip()
            if not paragraph:
                continue
        if kept and len("\n\n".join(kept + [paragraph])) > MAX_DESCRIPTION:
            break
        kept.append(paragraph)
    text = "\n\n".join(kept)
    if len(text) > MAX_DESCRIPTION:  # a single long first paragraph: cut at a word boundary
        text = text[:MAX_DESCRIPTION].rsplit(" ", 1)[0] + " …"
    return text


def first_example(doc: str, name: str) -> str | None:
    """The first doctest line of the docstring that calls `name`, with up to three lines of its output."""
    lines = doc.splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith(">>> ") and re.search(rf"(?<!\w){re.escape(name)}\(", stripped):
            block = [stripped]
            for out in lines[i + 1:i + 4]:
                out = out.strip()
                if not out or out.startswith(">>>"):
                    break
                block.append(out)
            return "\n".join(block)
    return None


def render(module_name: str, shown: str, functions: list[str]) -> str:
    module = importlib.import_module(module_name)
    summary = description(inspect.getdoc(module) or "").split("\n\n")[0]
    title = module_name if shown == module_name else f"{module_name} (imported as `{shown}`)"
    parts = [f"# {title}\n", f"{summary}\n" if summary else ""]
    for path in functions:
        obj = module
        for attribute in path.split("."):
            obj = getattr(obj, attribute)
        qualified = f"{shown}.{path}"
        doc = inspect.getdoc(obj) or ""
        text = description(doc)
        parts.append(f"## {qualified}\n\n```python\n{signature(obj, qualified)}\n```\n\n{text}\n")
        example = first_example(doc, path.split(".")[-1])
        if example:
            parts.append(f"Example:\n\n```python\n{example}\n```\n")
    return "\n".join(p for p in parts if p)


def check_rows(documents: dict[str, str]) -> list[dict]:
    """Evaluate every answer and check that the function it calls is documented in its source document."""
    namespace = {"statistics": statistics, "os": os, "json": json, "re": re, "hashlib": hashlib,
                 "textwrap": textwrap, "itertools": itertools, "math": math, "urllib": urllib, "np": np,
                 "decimal": decimal, **SAMPLES}
    rows, seen = [], set()
    counters: dict[str, int] = {}
    for module, question, answer in ROWS:
        if module not in MODULES:
            raise SystemExit(f"unknown source module {module!r} for {answer!r}")
        if "\n" in answer or question in seen:
            raise SystemExit(f"answer must be one line and questions unique: {answer!r}")
        seen.add(question)
        try:
            eval(answer, dict(namespace))  # noqa: S307 - our own fixed, pure expressions
        except Exception as error:  # noqa: BLE001
            raise SystemExit(f"answer does not evaluate: {answer!r}: {error!r}") from error
        shown = MODULES[module][0]
        called = [f"{shown}.{f}" for f in MODULES[module][1] if re.search(
            rf"(?<![\w.]){re.escape(shown)}\.{re.escape(f.split('.')[0])}\b", answer)]
        if not called or not all(f"## {c}" in documents[module] for c in called):
            raise SystemExit(f"the call in {answer!r} is not documented in {doc_name(module)}")
        counters[module] = counters.get(module, 0) + 1
        rows.append({"id": f"{module.replace('.', '-')}-{counters[module]:02d}", "question": question,
                     "answer": answer, "source": doc_name(module)})
    return rows


def main() -> None:
    documents = {module: render(module, shown, functions) for module, (shown, functions) in MODULES.items()}
    rows = check_rows(documents)
    DOCS.mkdir(parents=True, exist_ok=True)
    for stale in DOCS.glob("*.md"):
        if stale.stem not in MODULES:
            stale.unlink()
    for module, text in documents.items():
        (DOCS / doc_name(module)).write_text(text, encoding="utf-8")
    QUESTIONS.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    total = sum((DOCS / doc_name(m)).stat().st_size for m in MODULES)
    print(f"Python {sys.version.split()[0]}, numpy {np.__version__}: {len(documents)} documents "
          f"({total / 1024:.1f} KiB), {len(rows)} questions")


if __name__ == "__main__":
    main()
