"""Secret redaction for everything a snapshot writes: environments, command lines, free text.

Three rules, applied in this order:

1. **By name.** An environment variable, a ``--flag=value`` / ``--flag value`` argument or a
   ``NAME=value`` argument whose name contains TOKEN, SECRET, PASSWORD (or the short forms
   PASSWD, PASS, PWD as a word), KEY, AUTH, CREDENTIAL, COOKIE or PRIVATE has its value
   replaced.
2. **URL credentials.** The user-info part of any URL (``https://user:pass@host``) is replaced,
   wherever it appears (values of harmless-looking variables, arguments, socket lists).
   Local variables (``--locals``) follow the same rule by their name: ``api_token = '...'``
   becomes ``api_token = <REDACTED>``, and a URL whose credentials were cut off by the
   summary's length cap (``'https://user:pa...'``) loses what is left of them.
3. **By value.** Every value removed by rules 1 and 2 is remembered; :meth:`Redactor.scrub`
   removes those exact strings from any other text later written to the archive (locals,
   thread names, file paths), because a secret read from the environment often ends up in a
   local variable too. Values shorter than :data:`MIN_SCRUB_LEN` are not scrubbed by value:
   replacing a one-letter password everywhere would destroy the archive and reveal nothing.
   A secret-named local's value is remembered only when it is a string of at least
   :data:`MIN_LOCAL_SCRUB_LEN` characters: locals such as ``key`` routinely hold short common
   words (a dict key like ``'name'``) that must not be blanked across the whole archive.
"""

from __future__ import annotations

import re
import threading
from typing import Dict
from typing import Iterable
from typing import List
from typing import Mapping
from typing import Optional
from typing import Set

REDACTED = "<REDACTED>"
"""What a secret is replaced with."""

MIN_SCRUB_LEN = 4
"""Shortest secret value that is also scrubbed from free text by value."""

MIN_LOCAL_SCRUB_LEN = 8
"""Shortest secret-named local's string value that is also scrubbed from free text."""

SECRET_NAME = re.compile(
    r"TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|KEY|AUTH|CREDENTIAL|COOKIE|PRIVATE"
    r"|PASS(?:$|[_.-])|(?:^|[_.-])PWD(?:$|[_.-])",
    re.IGNORECASE,
)
"""Names whose values are secrets. ``PWD`` alone is the working directory, not a password."""

# scheme://userinfo@host: userinfo has no '/', '@' or whitespace. Matching the scheme keeps
# e-mail addresses (no '://') intact.
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/@\s'\"]+)@")

# The same, cut by a length cap before the '@' ("'https://user:pa...'"): what is left of the
# user-info is dropped too. Only when it has a ':' (user:password; a cut host:port loses
# nothing secret but is redacted as well, which is the safe side).
_URL_CUT_USERINFO = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/@\s'\"]*:[^/@\s'\"]*?)"
    r"(?P<cut>\.\.\.|…)(?P<end>['\"]?)$"
)
# A quoted str/bytes summary of a local: 'text', "text", b'text', with an optional cut marker.
_QUOTED = re.compile(r"^b?(?P<q>['\"])(?P<text>.*?)(?:\.\.\.|…)?(?P=q)?(?:\.\.\.|…)?$", re.DOTALL)

# --name=value, -name=value
_FLAG_WITH_VALUE = re.compile(r"^(?P<flag>--?[A-Za-z0-9][\w.\-]*)=(?P<value>.*)$", re.DOTALL)
# --name (value in the next argument)
_FLAG_ALONE = re.compile(r"^--?[A-Za-z0-9][\w.\-]*$")
# NAME=value (env-style arguments, e.g. 'env API_TOKEN=x cmd' or 'make PASSWORD=x')
_ASSIGNMENT = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)=(?P<value>.*)$", re.DOTALL)


def is_secret_name(name: str) -> bool:
    """Whether a variable or option name says its value is a secret."""
    bare = name.lstrip("-")
    if bare.upper() == "PWD":
        return False
    return bool(SECRET_NAME.search(bare))


class Redactor:
    """Redacts secrets and remembers the values it removed, to scrub them everywhere else.

    One instance serves a whole snapshot (thread-safe), so a secret found in one process's
    environment is also removed from another process's locals.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: Set[str] = set()
        self._pattern: Optional[re.Pattern[str]] = None
        self.count = 0
        """How many values were redacted (reported in the snapshot)."""
        self._secret_local_names: Dict[str, bool] = {}

    # --------------------------------------------------------------------- remembering
    def _remember(self, value: str, count: bool = True) -> None:
        with self._lock:
            self.count += int(count)
            for v in {value, value.strip()}:
                if len(v) >= MIN_SCRUB_LEN and v not in self._values:
                    self._values.add(v)
                    self._pattern = None

    @property
    def secret_values(self) -> Set[str]:
        """The secret values seen so far (for tests; never write these anywhere)."""
        with self._lock:
            return set(self._values)

    # ----------------------------------------------------------------------- rule 2
    def redact_urls(self, text: str) -> str:
        """Replaces the credentials of every URL in ``text``."""

        def repl(m: re.Match[str]) -> str:
            self._remember(m.group("userinfo"))
            # The password alone is the real secret; remember it separately so a bare
            # occurrence elsewhere is scrubbed too.
            _, sep, password = m.group("userinfo").partition(":")
            if sep and password:
                self._remember(password, count=False)
            return f"{m.group('scheme')}{REDACTED}@"

        return _URL_USERINFO.sub(repl, text)

    # ----------------------------------------------------------------------- rule 1
    def redact_value(self, value: str) -> str:
        """Redacts a value known to be a secret (returns the placeholder)."""
        if value:
            self._remember(value)
            return REDACTED
        return value

    def redact_env(self, env: Mapping[str, str]) -> Dict[str, str]:
        """Returns a copy of an environment with secret values replaced."""
        out: Dict[str, str] = {}
        for name, value in env.items():
            if is_secret_name(name):
                out[name] = self.redact_value(value)
            else:
                out[name] = self.redact_urls(value)
        return out

    def redact_cmdline(self, argv: Iterable[str]) -> List[str]:
        """Returns a copy of a command line with secret arguments replaced."""
        args = list(argv)
        out: List[str] = []
        secret_next = False
        for arg in args:
            if secret_next:
                secret_next = False
                # '--token --verbose': the next word is another flag, not the secret.
                if not _FLAG_ALONE.match(arg):
                    out.append(self.redact_value(arg))
                    continue
            m = _FLAG_WITH_VALUE.match(arg)
            if m and is_secret_name(m.group("flag")):
                out.append(f"{m.group('flag')}={self.redact_value(m.group('value'))}")
                continue
            if _FLAG_ALONE.match(arg) and is_secret_name(arg):
                secret_next = True
                out.append(arg)
                continue
            m = _ASSIGNMENT.match(arg)
            if m and is_secret_name(m.group("name")):
                out.append(f"{m.group('name')}={self.redact_value(m.group('value'))}")
                continue
            out.append(self.redact_urls(arg))
        return out

    def redact_locals(self, local_vars: Mapping[str, str]) -> Dict[str, str]:
        """Returns a copy of one frame's locals (name -> summary or repr) with secrets removed.

        A secret-named local's value becomes the placeholder; its string content (quotes and
        cut marker stripped) is remembered for scrubbing elsewhere when it is long enough.
        Every other value loses URL credentials, including ones cut short by a length cap.
        """
        out: Dict[str, str] = {}
        names = self._secret_local_names
        for name, value in local_vars.items():
            secret = names.get(name)
            if secret is None:  # a few hundred distinct names per snapshot, 20,000 frames
                secret = names[name] = is_secret_name(name)
            if secret:
                if value in ("None", "''", '""', "b''", 'b""'):
                    out[name] = value  # an unset secret reveals nothing and helps the reader
                    continue
                with self._lock:
                    self.count += 1
                m = _QUOTED.match(value)
                if m and len(m.group("text")) >= MIN_LOCAL_SCRUB_LEN:
                    self._remember(m.group("text"), count=False)
                out[name] = REDACTED
                continue
            if "://" in value:  # both URL rules need it; most values are ints and summaries
                value = self.redact_urls(value)
                value = _URL_CUT_USERINFO.sub(
                    lambda m: f"{m.group('scheme')}{REDACTED}{m.group('cut')}{m.group('end')}",
                    value,
                )
            out[name] = value
        return out

    # ----------------------------------------------------------------------- rule 3
    def scrub(self, text: str) -> str:
        """Removes URL credentials and every remembered secret value from free text."""
        if not text:
            return text
        text = self.redact_urls(text)
        with self._lock:
            if not self._values:
                return text
            if self._pattern is None:
                # Longest first, so a secret containing another is replaced whole.
                alts = sorted(self._values, key=len, reverse=True)
                self._pattern = re.compile("|".join(re.escape(v) for v in alts))
            pattern = self._pattern
        return pattern.sub(REDACTED, text)

    def scrub_json(self, text: str) -> str:
        """Scrubs serialized JSON in one pass: each secret is also matched in its JSON-escaped
        spelling (a quote or backslash inside a secret is escaped in the text)."""
        import json

        text = self.redact_urls(text)
        with self._lock:
            variants = set()
            for v in self._values:
                variants.add(v)
                variants.add(json.dumps(v)[1:-1])
                variants.add(json.dumps(v, ensure_ascii=False)[1:-1])
        if not variants:
            return text
        alts = sorted(variants, key=len, reverse=True)
        return re.sub("|".join(re.escape(v) for v in alts), REDACTED, text)

    def scrub_tree(self, obj: object) -> object:
        """Scrubs every string inside nested dicts, lists and tuples (keys included)."""
        if isinstance(obj, str):
            return self.scrub(obj)
        if isinstance(obj, dict):
            return {self.scrub_tree(k): self.scrub_tree(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.scrub_tree(v) for v in obj]
        return obj
