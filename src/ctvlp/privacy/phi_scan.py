"""Search shared outputs for known identifiers, looking inside the formats that hide text from a byte search.

A plain byte search misses a name in a snappy-compressed parquet page, a Flate-compressed PDF stream or a
base64-embedded file in the HTML report. This scanner opens those: parquet cells and metadata, PDF streams,
data URIs and base64 blobs of HTML, zip members (npz) and the string arrays inside them (numpy stores
``<U`` arrays as UTF-32, invisible to a UTF-8 search), text chunks of PNG files (tEXt, zTXt, iTXt), gzip
members, and everything else as bytes; it also checks every file's own name. Matching is
case-insensitive (an upper-cased name in a log is still the name). ``output_folders`` lists what a
workflow run writes, the Slurm job logs under ``.snakemake/slurm_logs`` included.
"""

from __future__ import annotations

import base64
import gzip
import io
import re
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

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
            member = archive.read(name)
            yield from (_npy_texts(member) if name.endswith(".npy") else _texts_of(member, Path(name).suffix))


def _npy_texts(data: bytes) -> Iterator[bytes]:
    """The raw bytes, and the strings of a text array decoded (``<U`` is UTF-32, ``|S`` bytes); no pickle."""
    import numpy as np

    yield data
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception:  # not a readable array (or an object array, which is never unpickled)
        return
    if array.dtype.kind in "US":
        yield "\n".join(map(str, array.ravel().tolist())).encode("utf-8", errors="replace")


_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_texts(data: bytes) -> Iterator[bytes]:
    """Keywords and text of every tEXt, zTXt and iTXt chunk (zTXt and compressed iTXt inflated)."""
    yield data
    pos = len(_PNG_MAGIC)
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length
        try:
            if kind == b"tEXt":
                yield body
            elif kind == b"zTXt":
                key, _, rest = body.partition(b"\0")
                yield key + b"\n" + zlib.decompress(rest[1:])
            elif kind == b"iTXt":
                key, _, rest = body.partition(b"\0")
                compressed, rest = rest[0], rest[2:]
                lang, _, rest = rest.partition(b"\0")
                translated, _, text = rest.partition(b"\0")
                yield b"\n".join([key, lang, translated, zlib.decompress(text) if compressed else text])
        except (zlib.error, IndexError):
            yield body


def _texts_of(data: bytes, suffix: str) -> Iterator[bytes]:
    if suffix == ".parquet" or data[:4] == b"PAR1":
        try:
            yield from _parquet_texts(data)
            return
        except Exception:  # not a readable parquet file after all: fall through to bytes
            pass
    if data[:2] == b"\x1f\x8b":  # gzip (every member): search the inflated content as what it holds
        yield data
        try:
            yield from _texts_of(gzip.decompress(data), "")
        except (OSError, EOFError, zlib.error):
            pass
        return
    if data[:8] == _PNG_MAGIC:
        yield from _png_texts(data)
    elif suffix == ".npy" or data[:6] == b"\x93NUMPY":
        yield from _npy_texts(data)
    elif suffix == ".pdf" or data[:5] == b"%PDF-":
        yield from _pdf_texts(data)
    elif suffix in (".html", ".htm"):
        yield from _html_texts(data)
    elif data[:4] == b"PK\x03\x04":
        yield from _zip_texts(data)
    else:
        yield data


def _folded(text: bytes) -> bytes:
    """Case-folded UTF-8 of a text (ASCII lowered as bytes too, so binary content is still searched)."""
    return text.decode("utf-8", errors="ignore").casefold().encode("utf-8")


class _Needles:
    """All identifiers searched in one pass per text: a table of the identifiers' first three bytes picks
    the few positions where one may start (numpy, over the whole text at once), and only those positions are
    compared. One ``in`` per identifier and file took minutes for a demo run's outputs (about a thousand
    identifiers, 400 MB of checkpoints); this takes seconds and finds the same matches."""

    _CHUNK = 1 << 24  # bytes per numpy pass (bounds memory for large files)

    def __init__(self, identifiers: Iterable[str], min_length: int) -> None:
        self.needles = [(s, s.casefold().encode("utf-8")) for s in identifiers if len(s) >= min_length]
        self.short = [(s, b) for s, b in self.needles if len(b) < 3]
        self.by_prefix: dict[int, list[tuple[str, bytes]]] = {}
        for s, b in self.needles:
            if len(b) >= 3:
                self.by_prefix.setdefault(int.from_bytes(b[:3], "big"), []).append((s, b))
        self.table = np.zeros(1 << 24, dtype=bool)
        self.table[list(self.by_prefix)] = True

    def found_in(self, text: bytes) -> set[str]:
        """The identifiers that occur in ``text`` (an all-digit one only as a whole number)."""
        found = {s for s, b in self.short if _contains(text, b)}
        if not self.by_prefix or len(text) < 3:
            return found
        for start in range(0, len(text), self._CHUNK):
            piece = np.frombuffer(text, dtype=np.uint8, count=min(self._CHUNK + 2, len(text) - start),
                                  offset=start).astype(np.uint32)
            if len(piece) < 3:
                break
            codes = (piece[:-2] << 16) | (piece[1:-1] << 8) | piece[2:]
            for pos in np.flatnonzero(self.table[codes]):
                at = start + int(pos)
                for s, b in self.by_prefix[int(codes[pos])]:
                    if s not in found and text.startswith(b, at) and _whole(text, b, at):
                        found.add(s)
        return found


def _whole(text: bytes, needle: bytes, at: int) -> bool:
    """An all-digit identifier counts only as a whole number: a loss value 4.119780209 is not the birth date
    19780209, while "P19780209" or "19780209.dcm" are."""
    if not needle.isdigit():
        return True
    end = at + len(needle)
    return not (at > 0 and text[at - 1:at].isdigit()) and not (end < len(text) and text[end:end + 1].isdigit())


def _contains(haystack: bytes, needle: bytes) -> bool:
    """Substring match with the whole-number rule of ``_whole`` (for identifiers too short for the table)."""
    at = haystack.find(needle)
    while at >= 0:
        if _whole(haystack, needle, at):
            return True
        at = haystack.find(needle, at + 1)
    return False


def find_identifiers(folders: Iterable[Path], identifiers: Iterable[str], min_length: int = 5) -> list[tuple[str, str]]:
    """(file, identifier) for every identifier found in any file under the folders, or in a file's or a
    folder's name below them (case-insensitive)."""
    needles = _Needles(identifiers, min_length)
    hits: list[tuple[str, str]] = []
    for folder in folders:
        folder = Path(folder)
        for path in sorted(folder.rglob("*")):
            if not path.is_file():
                continue
            found = needles.found_in(_folded(str(path.relative_to(folder)).encode()))
            for text in _texts_of(path.read_bytes(), path.suffix.lower()):
                found |= needles.found_in(_folded(text) if len(text) < 64_000_000 else text.lower())
            hits += [(str(path), s) for s in sorted(found)]
    return hits


def output_folders(workdir: str | Path, results: str | Path | None = None, logs: str | Path | None = None) -> list[Path]:
    """What a run writes and a reviewer may see: results/, logs/, Snakemake's own logs and the Slurm job
    logs (``.snakemake/slurm_logs``, one file per job with the job's stdout and stderr)."""
    workdir = Path(workdir)
    candidates = [Path(results) if results else workdir / "results", Path(logs) if logs else workdir / "logs",
                  workdir / ".snakemake" / "log", workdir / ".snakemake" / "slurm_logs"]
    return [p for p in candidates if p.exists()]
