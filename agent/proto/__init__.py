"""Protobuf messages built at import time from the ``.proto`` files in this folder.

Why not protoc-generated ``_pb2`` modules: generated code pins the protobuf runtime to the
generator's major version, and hostprof supports Python 3.9 through 3.15, which no single
protobuf major covers. The ``.proto`` files here use only the proto3 subset that this loader
understands (packages, imports, messages, scalar/message/repeated fields, services are
ignored), and it turns them into descriptors the installed protobuf runtime accepts.

Usage::

    from hostprof.proto import messages
    Profile = messages("perftools.profiles.Profile")
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Dict
from typing import List
from typing import Type

from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory
from google.protobuf.message import Message

_HERE = Path(__file__).parent
_FDP = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "double": _FDP.TYPE_DOUBLE,
    "float": _FDP.TYPE_FLOAT,
    "int64": _FDP.TYPE_INT64,
    "uint64": _FDP.TYPE_UINT64,
    "int32": _FDP.TYPE_INT32,
    "uint32": _FDP.TYPE_UINT32,
    "bool": _FDP.TYPE_BOOL,
    "string": _FDP.TYPE_STRING,
    "bytes": _FDP.TYPE_BYTES,
    "sint64": _FDP.TYPE_SINT64,
    "sint32": _FDP.TYPE_SINT32,
    "fixed64": _FDP.TYPE_FIXED64,
    "fixed32": _FDP.TYPE_FIXED32,
}
_TOKEN = re.compile(r"[A-Za-z_][\w.]*|\d+|[{}=;<>,()\[\]]|\"[^\"]*\"")


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def _parse(name: str, text: str) -> descriptor_pb2.FileDescriptorProto:
    fdp = descriptor_pb2.FileDescriptorProto(name=name, syntax="proto3")
    toks: List[str] = _TOKEN.findall(_strip_comments(text))
    pos = 0
    package = ""
    stack: List[descriptor_pb2.DescriptorProto] = []
    enums: List[descriptor_pb2.EnumDescriptorProto] = []
    depth_kinds: List[str] = []

    def take() -> str:
        nonlocal pos
        pos += 1
        return toks[pos - 1]

    while pos < len(toks):
        tok = take()
        if tok == "syntax":
            while take() != ";":
                pass
        elif tok == "package":
            package = take()
            fdp.package = package
            take()
        elif tok == "import":
            fdp.dependency.append(take().strip('"'))
            take()
        elif tok == "option":
            while take() != ";":
                pass
        elif tok == "service":
            depth = 0
            while True:
                t = take()
                if t == "{":
                    depth += 1
                elif t == "}":
                    depth -= 1
                    if depth == 0:
                        break
        elif tok == "message":
            msg = stack[-1].nested_type.add() if stack else fdp.message_type.add()
            msg.name = take()
            take()  # {
            stack.append(msg)
            depth_kinds.append("message")
        elif tok == "enum":
            en = stack[-1].enum_type.add() if stack else fdp.enum_type.add()
            en.name = take()
            take()
            enums.append(en)
            depth_kinds.append("enum")
        elif tok == "}":
            kind = depth_kinds.pop()
            (stack if kind == "message" else enums).pop()
        elif depth_kinds and depth_kinds[-1] == "enum":
            value_name = tok
            take()  # =
            enums[-1].value.add(name=value_name, number=int(take()))
            while take() != ";":
                pass
        elif tok == "reserved":
            while take() != ";":
                pass
        else:
            label = _FDP.LABEL_OPTIONAL
            if tok in ("repeated", "optional"):
                label = _FDP.LABEL_REPEATED if tok == "repeated" else _FDP.LABEL_OPTIONAL
                tok = take()
            ftype = tok
            fname = take()
            take()  # =
            number = int(take())
            while take() != ";":
                pass
            field = stack[-1].field.add(name=fname, number=number, label=label)
            if ftype in _SCALARS:
                field.type = _SCALARS[ftype]
            else:
                field.type_name = ftype if "." in ftype else f".{package}.{ftype}"
                if not field.type_name.startswith("."):
                    field.type_name = "." + field.type_name
                # Enum or message is decided after all files are parsed.
            field.json_name = fname
    return fdp


@cache
def _pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    files: Dict[str, descriptor_pb2.FileDescriptorProto] = {}
    for path in sorted(_HERE.glob("*.proto")):
        files[path.name] = _parse(path.name, path.read_text())
    enum_names = set()
    for fdp in files.values():
        for en in fdp.enum_type:
            enum_names.add(f".{fdp.package}.{en.name}")

    def fix(msgs: object, prefix: str) -> None:
        for m in msgs:  # type: ignore[attr-defined]
            for en in m.enum_type:
                enum_names.add(f"{prefix}.{m.name}.{en.name}")
            fix(m.nested_type, f"{prefix}.{m.name}")
            for f in m.field:
                if f.type_name:
                    f.type = _FDP.TYPE_ENUM if f.type_name in enum_names else _FDP.TYPE_MESSAGE

    for fdp in files.values():
        fix(fdp.message_type, f".{fdp.package}")
    added: set = set()

    def add(name: str) -> None:
        if name in added:
            return
        for dep in files[name].dependency:
            add(dep)
        pool.Add(files[name])
        added.add(name)

    for name in files:
        add(name)
    return pool


@cache
def messages(full_name: str) -> Type[Message]:
    """Returns the message class for a fully qualified name such as ``push.v1.PushRequest``."""
    desc = _pool().FindMessageTypeByName(full_name)
    return message_factory.GetMessageClass(desc)
