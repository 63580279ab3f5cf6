"""Secrets taken out of text by its structure, never by searching for the secret's own text. Pure.

::

    "... password='s3cret' host=db ..."        (a libpq connection string)  -> "... password=*** host=db ..."
    "...;PWD={s3;cret};UID=reader..."          (an ODBC connection string)  -> "...;PWD=***;UID=reader..."
    "https://reader:s3cret@db.example/x"       (a URL's user information)   -> "https://reader:***@db.example/x"
    "Authorization: Basic cmVhZGVyOnMzY3JldA=" (an HTTP header)             -> "Authorization: Basic ***"

Why not replace the secret wherever its text occurs: a short wrong password is then found by its
position in the rest of the message (``user "in***er"`` for the password ``dex``, ``port ***`` for
``5432``), and a message that quotes it in another form (escaped, URL-encoded) is not caught anyway.
The drivers are given secrets as keyword arguments, never inside a string of ours; these patterns
catch the forms a driver or a client builds from them and may echo.
"""

from __future__ import annotations

import re

MASK = "***"
# A value after "password=" / "PWD=": quoted ('...' with \' escapes, {...} with }} escapes); or, in an ODBC
# string, words up to the ";" that ends it (spaces kept in); or else one word (libpq quotes a value with spaces).
_VALUE = r"(?:'(?:[^'\\]|\\.)*'|\{(?:[^}]|\}\})*\}|[^;\s'=]+(?:\s+[^;\s'=]+)*(?=;)|[^;\s']+)"
_PATTERNS = (
    # libpq key=value and ODBC connection strings
    (re.compile(rf"(?i)\b((?:password|pwd)\s*=\s*){_VALUE}"), rf"\g<1>{MASK}"),
    # a URL's user information: scheme://user:password@ (a password holds no "/" unencoded)
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s/]*@"), rf"\g<1>{MASK}@"),
    # an Authorization header: its scheme, then the credentials
    (re.compile(r"(?i)\b(authorization['\"]?\s*[:=]\s*['\"]?(?:basic|bearer|apikey|api-key|token|negotiate)\s+)"
                r"[^\s'\",}]+"), rf"\g<1>{MASK}"),
)


def redact(text: str) -> str:
    """``text`` with every password, URL password and Authorization value replaced by ``***``."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def first_line(text: str) -> str:
    """The first non-empty line of a message, redacted: what an ``error:`` line may quote of a driver's text."""
    stripped = text.strip()
    return redact(stripped.splitlines()[0] if stripped else stripped)
