"""A FlatBuffers verifier for the TFLite schema, in pure Python.

The same checks as the C++ ``flatbuffers::Verifier`` that LiteRT runs before
it reads a model (``VerifyModelBuffer``): every offset, vtable, table, vector
and string lies inside the buffer and is aligned; strings are NUL-terminated
inside the buffer (the generated Python reader silently truncates an over-long
one); vector sizes cannot overflow; the union members named by their type
fields verify as their tables; nesting depth ≤ 64 and at most 1,000,000 tables.

The schema is not written out here: it is derived once from the generated
Python bindings the ``tflite-micro`` package ships (the builder functions give
each field's slot and scalar size, the accessors say whether an offset field is
a string, a table, a vector or a union, and the ``…Creator`` functions map
union types to tables), so it follows the schema those bindings were generated
from. :func:`layout` returns where every field of a model lies (the fuzzer in
``bench/fuzz.py`` aims its structural edits with it). Nothing here is public API.
"""

from __future__ import annotations

import dataclasses
import re
import struct
from typing import Any, Optional

MAX_DEPTH = 64
MAX_TABLES = 1_000_000
MAX_SIZE = 0x7FFFFFFF  # FLATBUFFERS_MAX_BUFFER_SIZE: sizes are 32-bit signed
_SCALARS = {"Bool": 1, "Int8": 1, "Uint8": 1, "Int16": 2, "Uint16": 2, "Int32": 4, "Uint32": 4, "Float32": 4,
            "Int64": 8, "Uint64": 8, "Float64": 8}


class VerifyError(ValueError):
    """The buffer is not a valid flatbuffer of the schema; the message says where."""


@dataclasses.dataclass(frozen=True)
class Field:
    """One field of a table as the verifier sees it."""

    name: str  # accessor name, e.g. "Shape"
    slot: int  # field id: its vtable entry is at 4 + 2 * slot
    kind: str  # "scalar", "string", "table", "vector", "union", "struct"
    size: int = 0  # scalar size, vector element size or struct size
    target: str = ""  # table (table, vector of tables), union name (union) or struct name
    elem: str = ""  # vectors: "scalar", "string", "table" or "struct"


@dataclasses.dataclass(frozen=True)
class Schema:
    tables: dict  # table name -> tuple[Field, ...]
    unions: dict  # union name -> {type value: table name}
    union_type_field: dict  # (table, union accessor) -> accessor of its type field


_CACHE: dict[int, Schema] = {}


def schema_of(module: Any) -> Schema:
    """The verifier's view of a generated ``*_py_generated`` schema module (cached)."""
    key = id(module)
    if key not in _CACHE:
        with open(module.__file__, encoding="utf-8") as f:
            _CACHE[key] = _derive(f.read(), module)
    return _CACHE[key]


_CLASS_RE = re.compile(r"^class (\w+)\(object\):", re.M)
_START_RE = re.compile(r"^def (\w+)Start\(builder\):\n\s+builder\.StartObject\(\d+\)", re.M)
_ADD_RE = re.compile(r"^def (\w+)\(builder, \w+\):\n\s+builder\.Prepend(\w+)Slot\((\d+),", re.M)
_VEC_RE = re.compile(r"^def (\w+)Vector\(builder, numElems\):\n\s+return builder\.StartVector\((\d+), numElems",
                     re.M)
_METHOD_RE = re.compile(r"^    def (\w+)\(self(?:, j)?\):\n(.*?)(?=^    # |^    def |^def |\Z)", re.M | re.S)
_CREATOR_RE = re.compile(r"^def (\w+)Creator\(unionType, table\):\n(.*?)(?=^\S)", re.M | re.S)
_MEMBER_RE = re.compile(r"if unionType == (\w+)\.(\w+):\s*\n\s*return (\w+)T\.InitFromBuf")
_UNPACK_RE = re.compile(r"= (\w+)Creator\(self\.(\w+), \w+\.(\w+)\(\)\)")
_OBJ_RE = re.compile(r"obj = (\w+)\(\)")
_GET_RE = re.compile(r"self\._tab\.Get\(flatbuffers\.number_types\.(\w+)Flags")


def _derive(src: str, module: Any) -> Schema:
    # union name -> {type value: table}, from the object API's "<Union>Creator" functions
    unions: dict[str, dict[int, str]] = {}
    for m in _CREATOR_RE.finditer(src):
        unions[m.group(1)] = {int(getattr(getattr(module, mm.group(1)), mm.group(2))): mm.group(3)
                              for mm in _MEMBER_RE.finditer(m.group(2))}
    starts = [(m.group(1), m.start()) for m in _CLASS_RE.finditer(src)]
    chunks = {name: src[start:(starts[k + 1][1] if k + 1 < len(starts) else len(src))]
              for k, (name, start) in enumerate(starts)}
    tables: dict[str, tuple[Field, ...]] = {}
    union_type_field: dict[tuple[str, str], str] = {}
    for name, chunk in chunks.items():
        if not any(m.group(1) == name for m in _START_RE.finditer(chunk)):
            continue  # an enum, a struct or an object-API class
        methods = {m.group(1): m.group(2) for m in _METHOD_RE.finditer(chunk)}
        vec_sizes = {m.group(1): int(m.group(2)) for m in _VEC_RE.finditer(chunk)}
        union_of = {}
        for um in _UNPACK_RE.finditer(chunks.get(name + "T", "")):
            type_attr = um.group(2)
            union_type_field[(name, um.group(3))] = type_attr[0].upper() + type_attr[1:]
            union_of[um.group(3)] = um.group(1)
        fields = []
        prefix = name + "Add"
        for fm in _ADD_RE.finditer(chunk):
            if not fm.group(1).startswith(prefix):
                continue
            acc, how, slot = fm.group(1)[len(prefix):], fm.group(2), int(fm.group(3))
            if how in _SCALARS:
                fields.append(Field(acc, slot, "scalar", _SCALARS[how]))
                continue
            body = methods.get(acc)
            if body is None:
                raise RuntimeError(f"no accessor {name}.{acc}")
            if how == "Struct":
                target = _OBJ_RE.search(body).group(1)
                fields.append(Field(acc, slot, "struct", int(getattr(module, target).SizeOf()), target))
            elif how == "UOffsetTRelative":
                f = _offset_field(name, acc, slot, body, vec_sizes.get(f"{name}Start{acc}", 4))
                if f.kind == "union":
                    if acc not in union_of:
                        raise RuntimeError(f"no union type for {name}.{acc}")
                    f = dataclasses.replace(f, target=union_of[acc])
                fields.append(f)
            else:
                raise RuntimeError(f"unknown slot kind {how} in {name}.{acc}")
        tables[name] = tuple(sorted(fields, key=lambda f: f.slot))
    return Schema(tables, unions, union_type_field)


def _offset_field(table: str, acc: str, slot: int, body: str, vec_size: int) -> Field:
    if "self._tab.Union(" in body:
        return Field(acc, slot, "union")
    om = _OBJ_RE.search(body)
    if "self._tab.Vector(o)" in body:
        if "self._tab.String(" in body:
            return Field(acc, slot, "vector", 4, elem="string")
        if om and "Indirect(x)" in body:
            return Field(acc, slot, "vector", 4, om.group(1), "table")
        if om:
            return Field(acc, slot, "vector", vec_size, om.group(1), "struct")
        fm = _GET_RE.search(body)
        if fm and fm.group(1) in _SCALARS:
            return Field(acc, slot, "vector", _SCALARS[fm.group(1)], elem="scalar")
        raise RuntimeError(f"unknown vector {table}.{acc}")
    if "self._tab.String(" in body:
        return Field(acc, slot, "string")
    if om and "Indirect(" in body:
        return Field(acc, slot, "table", 0, om.group(1))
    raise RuntimeError(f"unknown field {table}.{acc}")


class _Verifier:
    def __init__(self, buf: bytes, schema: Schema, record: Optional[list] = None) -> None:
        self.buf = buf
        self.n = len(buf)
        self.schema = schema
        self.depth = 0
        self.tables = 0
        self.record = record

    # -- primitives (flatbuffers::Verifier) --
    def fail(self, what: str) -> None:
        raise VerifyError(what)

    def verify(self, pos: int, size: int, what: str) -> None:
        if not (0 <= pos and size < self.n and pos <= self.n - size):
            self.fail(f"{what} at byte {pos} ({size} bytes) lies outside the {self.n}-byte buffer")

    def scalar(self, pos: int, size: int, what: str) -> None:
        if pos % size:
            self.fail(f"{what} at byte {pos} is not {size}-byte aligned")
        self.verify(pos, size, what)

    def u32(self, pos: int) -> int:
        return struct.unpack_from("<I", self.buf, pos)[0]

    def note(self, kind: str, pos: int, size: int, where: str) -> None:
        if self.record is not None:
            self.record.append((kind, pos, size, where))

    def offset(self, pos: int, what: str) -> int:
        """VerifyOffset: an uoffset_t at ``pos`` pointing forward, inside the buffer; returns its target."""
        self.scalar(pos, 4, what)
        o = self.u32(pos)
        self.note("offset", pos, 4, what)
        if o == 0:
            self.fail(f"{what} at byte {pos} is a zero offset")
        if o > MAX_SIZE:
            self.fail(f"{what} at byte {pos} is a negative offset")
        self.verify(pos + o, 1, what)
        return pos + o

    def vector(self, pos: int, elem_size: int, what: str) -> int:
        self.scalar(pos, 4, f"{what} (length)")
        count = self.u32(pos)
        self.note("length", pos, 4, what)
        if count >= MAX_SIZE // max(1, elem_size):
            self.fail(f"{what} at byte {pos} claims {count} elements")
        self.verify(pos, 4 + elem_size * count, what)
        return count

    def string(self, pos: int, what: str) -> None:
        count = self.vector(pos, 1, what)
        end = pos + 4 + count
        self.verify(end, 1, f"{what} (terminator)")
        if self.buf[end] != 0:
            self.fail(f"{what} at byte {pos} ({count} bytes) is not NUL-terminated: its length runs past it")

    # -- tables --
    def table(self, pos: int, name: str, what: str) -> None:
        self.depth += 1
        self.tables += 1
        if self.depth > MAX_DEPTH or self.tables > MAX_TABLES:
            self.fail(f"{what}: nesting deeper than {MAX_DEPTH} or more than {MAX_TABLES:,} tables")
        self.scalar(pos, 4, f"{what} ({name} table)")
        soff = struct.unpack_from("<i", self.buf, pos)[0]
        vt = pos - soff
        self.scalar(vt, 2, f"{what} ({name} vtable)")
        vsize = struct.unpack_from("<H", self.buf, vt)[0]
        self.note("vtable", vt, 2, f"{name} vtable size")
        if vsize & 1:
            self.fail(f"{what}: the {name} vtable at byte {vt} has an odd size {vsize}")
        self.verify(vt, vsize, f"{what} ({name} vtable)")
        if vsize >= 4:
            self.note("vtable", vt + 2, 2, f"{name} table size")
        fields = self.schema.tables[name]
        present: dict[str, int] = {}
        for f in fields:
            entry = 4 + 2 * f.slot
            if entry + 2 > vsize:
                continue
            self.note("vtable", vt + entry, 2, f"{name}.{f.name} vtable entry")
            field_off = struct.unpack_from("<H", self.buf, vt + entry)[0]
            if field_off:
                present[f.name] = pos + field_off
        for f in fields:
            fpos = present.get(f.name)
            if fpos is None:
                continue
            where = f"{name}.{f.name}"
            if f.kind == "scalar":
                self.scalar(fpos, f.size, where)
                self.note(f"scalar{f.size}", fpos, f.size, where)
            elif f.kind == "struct":
                self.verify(fpos, f.size, where)
                self.note("struct", fpos, f.size, where)
            else:
                target = self.offset(fpos, where)
                if f.kind == "string":
                    self.string(target, where)
                elif f.kind == "table":
                    self.table(target, f.target, where)
                elif f.kind == "union":
                    tf = self.schema.union_type_field.get((name, f.name), f.name + "Type")
                    tpos = present.get(tf)
                    utype = self.buf[tpos] if tpos is not None else 0
                    member = self.schema.unions.get(f.target, {}).get(utype)
                    if member is not None:  # NONE and unknown types are not verified (as in C++)
                        self.table(target, member, where)
                else:
                    self.vector_field(target, f, where)
        self.depth -= 1

    def vector_field(self, pos: int, f: Field, where: str) -> None:
        count = self.vector(pos, f.size, where)
        if f.elem == "scalar":
            self.note(f"vec{f.size}", pos + 4, f.size * count, where)
        elif f.elem in ("table", "string"):
            for i in range(count):
                ep = pos + 4 + 4 * i
                target = ep + self.u32(ep)
                self.note("offset", ep, 4, f"{where}[{i}]")
                if f.elem == "table":
                    self.table(target, f.target, f"{where}[{i}]")
                else:
                    self.string(target, f"{where}[{i}]")


def verify(buf: bytes, module: Any, root: str = "Model", identifier: Optional[bytes] = b"TFL3",
           record: Optional[list] = None) -> None:
    """Verify ``buf`` as a flatbuffer whose root table is ``root``; raise :class:`VerifyError` if it is not.

    Args:
        buf: The whole buffer.
        module: The generated Python schema module.
        root: The root table's name.
        identifier: The 4-byte file identifier expected at bytes 4..8 (None: not checked).
        record: When given, every field location is appended as ``(kind, position, size, where)``.
    """
    schema = schema_of(module)
    v = _Verifier(bytes(buf), schema, record)
    if v.n >= MAX_SIZE:
        v.fail("the buffer is 2 GiB or larger")
    if v.n < 12:  # FLATBUFFERS_MIN_BUFFER_SIZE
        v.fail(f"only {v.n} bytes")
    if identifier is not None and bytes(buf[4:8]) != identifier:
        v.fail(f"file identifier is {bytes(buf[4:8])!r}, expected {identifier!r}")
    v.table(v.offset(0, "root offset"), root, root)


def layout(buf: bytes, module: Any, root: str = "Model") -> list:
    """Every field location of a valid buffer: ``[(kind, position, size, where), ...]``."""
    record: list = []
    verify(buf, module, root, record=record)
    return record
