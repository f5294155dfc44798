"""Connect-protocol message coding: binary protobuf or the protobuf JSON mapping.

Connect unary requests carry one message as ``application/proto`` or ``application/json``.
The JSON mapping names fields in lowerCamelCase (``profileTypeID``), writes int64 as strings
and bytes as base64. The message classes here come from :mod:`hostprof.proto`, whose loader
keeps proto field names as JSON names, so this module maps names both ways itself.
"""

from __future__ import annotations

import json
from typing import Any
from typing import Dict

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError
from google.protobuf.message import Message

from hostprof._errors import FormatError
from hostprof.proto import messages

PROTO = "application/proto"
JSON = "application/json"


def camel(name: str) -> str:
    """Proto field name to its JSON name (``profile_typeID`` -> ``profileTypeID``)."""
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def is_json(content_type: str) -> bool:
    """Whether a Content-Type names the JSON encoding."""
    return content_type.split(";")[0].strip().lower() in (JSON, "application/connect+json")


def _repeated(f: FieldDescriptor) -> bool:
    # protobuf 6+ has is_repeated; older runtimes only have label.
    flag = getattr(f, "is_repeated", None)
    if flag is not None:
        return bool(flag)
    return f.label == FieldDescriptor.LABEL_REPEATED


def _normalise(value: Any, desc: Descriptor) -> Dict[str, Any]:
    """Renames lowerCamelCase keys to proto field names, recursively."""
    if not isinstance(value, dict):
        raise FormatError(f"expected a JSON object for {desc.full_name}")
    by_name: Dict[str, FieldDescriptor] = {}
    for f in desc.fields:
        by_name[f.name] = f
        by_name[camel(f.name)] = f
    out: Dict[str, Any] = {}
    for key, item in value.items():
        f = by_name.get(key)
        if f is None:
            continue  # unknown fields are ignored, as the protobuf JSON mapping allows
        if f.type == FieldDescriptor.TYPE_MESSAGE and item is not None:
            if _repeated(f):
                if not isinstance(item, list):
                    raise FormatError(f"field {key!r} must be a JSON array")
                item = [_normalise(x, f.message_type) for x in item]
            else:
                item = _normalise(item, f.message_type)
        out[f.name] = item
    return out


def parse_message(full_name: str, body: bytes, content_type: str) -> Message:
    """Decodes a request message.

    Raises:
        FormatError: malformed protobuf or JSON, or JSON that does not fit the message.
    """
    cls = messages(full_name)
    if is_json(content_type):
        try:
            data = json.loads(body.decode("utf-8") or "{}")
            msg = cls()
            json_format.ParseDict(_normalise(data, cls.DESCRIPTOR), msg, ignore_unknown_fields=True)
            return msg
        except FormatError:
            raise
        except (ValueError, TypeError, json_format.ParseError, RecursionError) as exc:
            raise FormatError(f"bad JSON {cls.DESCRIPTOR.name}: {str(exc)[:200]}") from None
    try:
        return cls.FromString(body)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise FormatError(f"bad protobuf {cls.DESCRIPTOR.name}: {exc}") from None


def _camel_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {camel(k): _camel_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_camel_keys(v) for v in value]
    return value


def to_dict(msg: Message) -> Dict[str, Any]:
    """The protobuf JSON mapping of ``msg`` (lowerCamelCase, every field present)."""
    return _camel_keys(
        json_format.MessageToDict(
            msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
    )


def encode(msg: Message, content_type: str) -> bytes:
    """Encodes a response message in the request's encoding."""
    if is_json(content_type):
        return json.dumps(to_dict(msg), separators=(",", ":")).encode()
    return msg.SerializeToString()
