"""Search shared outputs for known identifiers, looking inside the formats that hide text from a byte search.

A plain byte search misses a name in a snappy-compressed parquet page, a Flate-compressed PDF stream or a
base64-embedded file in the HTML report. This scanner opens those: parquet cells and metadata, PDF streams,
data URIs and base64 blobs of HTML, zip members (npz), and everything else as bytes.
"""

from __future__ import annotations

import base64
import io
import re
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

_PDF_STREAM = re.compile(rb"stream\r?\n(.*?)\r?\nendstream", re.DOTALL)
_BASE64 = re.compile(rb"[A-Za-z0-9+/]{200,}={0,2}")
_PDF_TEXT_BLOCK = re.compile(rb"BT(.*?)ET", re.DOTALL)
_PDF_LITERAL = re.compile(rb"\((?:\\.|[^\\)])*\)")


def _pdf_shown_text(content: bytes) -> bytes:
    """The strings a content stream shows, each text block joined (kerning splits words into pieces)."""
    blocks = []
    for block in _PDF_TEXT_BLOCK.finditer(content):
        pieces = [lit[1:-1].replace(b"\\(", b"(").replace(b"\\)", b")") for lit in _PDF_LITERAL.findall(block.group(1))]
        blocks.append(b"".join(pieces))
    return b"\n".join(blocks)


def _pdf_texts(data: bytes) -> Iterator[bytes]:
    yield data
    for m in _PDF_STREAM.finditer(data):
        try:
            content = zlib.decompress(m.group(1))
        except zlib.error:
            content = m.group(1)
        yield content
        yield _pdf_shown_text(content)


def _html_texts(data: bytes) -> Iterator[bytes]:
    yield data
    for m in _BASE64.finditer(data):
        try:
            decoded = base64.b64decode(m.group(0) + b"=" * (-len(m.group(0)) % 4))
        except ValueError:
            continue
        yield from _texts_of(decoded, "")


def _parquet_texts(data: bytes) -> Iterator[bytes]:
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(data))
    yield str(table.schema.metadata).encode()
    yield "\n".join(table.column_names).encode()
    for column in table.columns:
        yield "\n".join(map(str, column.to_pylist())).encode("utf-8", errors="replace")


def _zip_texts(data: bytes) -> Iterator[bytes]:
    yield data
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for name in archive.namelist():
            yield name.encode()
            yield archive.read(name)


def _texts_of(data: bytes, suffix: str) -> Iterator[bytes]:
    if suffix == ".parquet" or data[:4] == b"PAR1":
        try:
            yield from _parquet_texts(data)
            return
        except Exception:  # not a readable parquet file after all: fall through to bytes
            pass
    if suffix == ".pdf" or data[:5] == b"%PDF-":
        yield from _pdf_texts(data)
    elif suffix in (".html", ".htm"):
        yield from _html_texts(data)
    elif data[:4] == b"PK\x03\x04":
        yield from _zip_texts(data)
    else:
        yield data


def find_identifiers(folders: Iterable[Path], identifiers: Iterable[str], min_length: int = 5) -> list[tuple[str, str]]:
    """(file, identifier) for every identifier found in any file under the folders (case-sensitive)."""
    needles = [(s, s.encode("utf-8")) for s in identifiers if len(s) >= min_length]
    hits: list[tuple[str, str]] = []
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")):
            if not path.is_file():
                continue
            found = set()
            for text in _texts_of(path.read_bytes(), path.suffix.lower()):
                found |= {s for s, b in needles if b in text}
            hits += [(str(path), s) for s in sorted(found)]
    return hits
