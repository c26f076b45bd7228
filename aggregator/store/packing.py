"""How the store packs what it keeps small: raw deflate (zlib), with preset dictionaries.

Pure: bytes and values in, bytes and values out. What is packed where:
- texts.body: a long text (a description), once however many rows name it;
- events.data: the merged event's fields as compact JSON, without its description (kept in
  texts) and id (the row's key);
- events.ics: the VEVENT, packed with the event's fields and description as its dictionary:
  it repeats them, so what is left to store is little more than its dates and ids;
- changes.before/after: a change's summary, without its description.

The dictionaries below are part of the stored format: every packed value needs the same
bytes to be read again. Never change them; a new format is a new constant and a migration.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from functools import lru_cache

#: raw deflate (no header or checksum: the database keeps the bytes whole) in an 8 KB window:
#: room for a VEVENT and its dictionary, and a state far cheaper to set up than 32 KB's,
#: which is most of the cost of packing a few hundred bytes. Part of the format: a reader
#: needs a window at least as large as the writer's
_WBITS = -13
_LEVEL = 6
_MEMLEVEL = 8

#: the JSON the store writes (the fields of a merged event, a change's summary), empty
JSON_WORDS = (
    b'{"uid":"","title":"","start":"T00:00:00Z","end":"T00:00:00Z","all_day":false,'
    b'"tzid":"Europe/","description":"","url":"https://","location":"","status":"scheduled",'
    b'"categories":[],"organisers":[],"source_ids":[],"members":[],"fingerprint":"",'
    b'"removed":false,"previous_start":null,"identities":[],"cancelled_by":[],"copies":[]}'
    b'{"title":"","start":"","end":"","all_day":false,"location":"","status":"cancelled",'
    b'"description":"","url":null,"organisers":[],"fields":["title","start","end","all_day",'
    b'"location","status","description","url"]}'
)
#: the VEVENT render_vevent writes, empty
VEVENT_WORDS = (
    b"BEGIN:VEVENT\r\nSUMMARY:\r\nDTSTART;VALUE=DATE:\r\nDTEND;VALUE=DATE:\r\nDTSTART;TZID=:"
    b"T000000\r\nDTEND;TZID=:T000000\r\nDTSTAMP:T000000Z\r\nUID:@\r\nSEQUENCE:0\r\n"
    b"CATEGORIES:\r\nCREATED:T000000Z\r\nDESCRIPTION:\r\nLAST-MODIFIED:T000000Z\r\n"
    b"LOCATION:\r\nSTATUS:CANCELLED\r\nSTATUS:CONFIRMED\r\nTRANSP:TRANSPARENT\r\n"
    b"URL:https://\r\nEND:VEVENT\r\n"
)


def deflate(data: bytes, words: bytes = b"") -> bytes:
    """`data` packed; `words`, if any, the dictionary: text it is likely to repeat."""
    if words:
        packer = zlib.compressobj(
            _LEVEL, zlib.DEFLATED, _WBITS, _MEMLEVEL, zlib.Z_DEFAULT_STRATEGY, words
        )
    else:
        packer = zlib.compressobj(_LEVEL, zlib.DEFLATED, _WBITS, _MEMLEVEL)
    return packer.compress(data) + packer.flush()


def inflate(packed: bytes, words: bytes = b"") -> bytes:
    """What `deflate(data, words)` packed."""
    unpacker = zlib.decompressobj(_WBITS, zdict=words) if words else zlib.decompressobj(_WBITS)
    return unpacker.decompress(packed) + unpacker.flush()


def text_key(text: str) -> int:
    """The key a text is found by: 64 bits of its hash, signed, as SQLite's integers are."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), signed=True)


def pack_text(text: str) -> bytes:
    """A text as texts.body keeps it."""
    return deflate(text.encode())


@lru_cache(maxsize=4096)
def unpack_text(packed: bytes | None) -> str:
    """The text; none (no row) is the empty text. The occurrences of a series are read
    together: their one text is unpacked once."""
    return "" if packed is None else inflate(packed).decode()


def json_bytes(value) -> bytes:
    """Compact JSON, UTF-8 as it is (no \\u escapes): what the store packs."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def pack_json(value) -> bytes:
    """A JSON value (a change's summary, an event's fields) packed."""
    return deflate(json_bytes(value), JSON_WORDS)


def unpack_json(packed: bytes):
    """The value pack_json packed."""
    return json.loads(inflate(packed, JSON_WORDS))


def pack_event(event_id: str, fields: dict, ics: bytes, description: str) -> tuple[bytes, bytes]:
    """An event's fields and VEVENT packed (events.data, events.ics): the VEVENT with what it
    repeats as its dictionary: its id, the fields, and the description as a VEVENT writes it."""
    written = json_bytes(fields)
    return deflate(written, JSON_WORDS), deflate(ics, _repeated(event_id, written, description))


def unpack_event(event_id: str, data: bytes, ics: bytes, description: str) -> tuple[dict, bytes]:
    """The fields and VEVENT that pack_event packed."""
    written = inflate(data, JSON_WORDS)
    return json.loads(written), inflate(ics, _repeated(event_id, written, description))


def _repeated(event_id: str, fields: bytes, description: str) -> bytes:
    """What a VEVENT repeats: the skeleton, the id (in its UID), the fields and the
    description's content line (last: what is nearest costs least to name)."""
    return VEVENT_WORDS + event_id.encode() + fields + _content_line(description)


def _content_line(description: str) -> bytes:
    """DESCRIPTION as RFC 5545 writes it when the text starts it: escaped (3.3.11), folded
    after 74 octets but never inside a character or after a backslash (as icalendar does).
    Part of the format: a copy, not the renderer's, which may change."""
    escaped = (
        description.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\n", "\\n")
    )
    line = b"DESCRIPTION:" + escaped.encode()
    parts, start = [], 0
    while len(line) - start > 74:
        cut = start + 74
        while line[cut] & 0xC0 == 0x80:  # back to the first octet of a character
            cut -= 1
        if line[cut - 1] == 0x5C:
            cut -= 1
        parts.append(line[start:cut])
        start = cut
    parts.append(line[start:])
    return b"\r\n ".join(parts)
