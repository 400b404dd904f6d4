# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SCRAM-SHA-256 password verifiers, computed and checked client-side (RFC 5802 / RFC 7677).

PostgreSQL stores a password as
``SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>``. Sending that
verifier in ``CREATE/ALTER ROLE ... PASSWORD`` instead of the password keeps the password out
of the server log and of ``pg_stat_activity``. A password is checked against a stored verifier
by recomputing both keys from the verifier's salt and iteration count.

Pure standard library (hashlib, hmac, stringprep); no database needed.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import binascii
import hashlib
import hmac
import os
import stringprep
import unicodedata

MECHANISM = 'SCRAM-SHA-256'
DEFAULT_ITERATIONS = 4096
SALT_BYTES = 16


class ScramVerifier(object):
    """A parsed SCRAM-SHA-256 verifier (no password material beyond the one-way keys)."""

    __slots__ = ('iterations', 'salt', 'stored_key', 'server_key')

    def __init__(self, iterations, salt, stored_key, server_key):
        self.iterations = iterations
        self.salt = salt
        self.stored_key = stored_key
        self.server_key = server_key

    def __str__(self):
        return '%s$%d:%s$%s:%s' % (MECHANISM, self.iterations, _b64(self.salt),
                                   _b64(self.stored_key), _b64(self.server_key))


def _b64(data):
    return base64.b64encode(data).decode('ascii')


# ---- SASLprep (RFC 4013), as PostgreSQL's pg_saslprep() applies it -----------------------------

_PROHIBITED = (
    stringprep.in_table_c12,   # non-ASCII space characters
    stringprep.in_table_c21_c22,  # control characters
    stringprep.in_table_c3,    # private use
    stringprep.in_table_c4,    # non-character code points
    stringprep.in_table_c5,    # surrogate codes
    stringprep.in_table_c6,    # inappropriate for plain text
    stringprep.in_table_c7,    # inappropriate for canonical representation
    stringprep.in_table_c8,    # change display properties / deprecated
    stringprep.in_table_c9,    # tagging characters
    stringprep.in_table_a1,    # unassigned code points
)


def _prohibited(ch):
    return any(table(ch) for table in _PROHIBITED)


def _bidi_ok(text):
    """RFC 3454 section 6: a string with RandALCat characters must start and end with one and
    contain no LCat character (pg_saslprep() does not prohibit the section 5.8 characters
    separately: they are in the C.8 table already)."""
    rand_al = [stringprep.in_table_d1(ch) for ch in text]
    if not any(rand_al):
        return True
    if any(stringprep.in_table_d2(ch) for ch in text):
        return False
    return rand_al[0] and rand_al[-1]


def saslprep(password):
    """The bytes PostgreSQL hashes for ``password``.

    Like pg_saslprep(): pure ASCII is used as is; otherwise the SASLprep profile is applied, and
    when the password is not valid under it (prohibited characters, bidi rules) PostgreSQL uses
    the raw UTF-8 bytes, and so do we.
    """
    if isinstance(password, bytes):
        try:
            password = password.decode('utf-8')
        except UnicodeDecodeError:
            return password
    raw = password.encode('utf-8')
    if all(ord(ch) < 0x80 for ch in password):
        return raw
    mapped = ''.join(' ' if stringprep.in_table_c12(ch) else ch
                     for ch in password if not stringprep.in_table_b1(ch))
    # pg_saslprep() checks the mapped characters (before normalisation), and so do we
    if not mapped or any(_prohibited(ch) for ch in mapped) or not _bidi_ok(mapped):
        return raw
    return unicodedata.normalize('NFKC', mapped).encode('utf-8')


# ---- verifiers ------------------------------------------------------------------------------

def _keys(password, salt, iterations):
    salted = hashlib.pbkdf2_hmac('sha256', saslprep(password), salt, iterations)
    client_key = hmac.new(salted, b'Client Key', hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b'Server Key', hashlib.sha256).digest()
    return stored_key, server_key


def build_verifier(password, salt=None, iterations=DEFAULT_ITERATIONS):
    """The SCRAM-SHA-256 verifier string of ``password`` (random 16-byte salt by default)."""
    if salt is None:
        salt = os.urandom(SALT_BYTES)
    stored_key, server_key = _keys(password, salt, iterations)
    return str(ScramVerifier(iterations, salt, stored_key, server_key))


def parse_verifier(text):
    """A ScramVerifier, or None when ``text`` is not a well-formed SCRAM-SHA-256 verifier."""
    if not text or not text.startswith(MECHANISM + '$'):
        return None
    try:
        dummy, iter_salt, keys = text.split('$')
        iterations, salt = iter_salt.split(':')
        stored_key, server_key = keys.split(':')
        verifier = ScramVerifier(int(iterations), base64.b64decode(salt, validate=True),
                                 base64.b64decode(stored_key, validate=True),
                                 base64.b64decode(server_key, validate=True))
    except (ValueError, binascii.Error):
        return None
    if verifier.iterations < 1 or len(verifier.stored_key) != 32 or len(verifier.server_key) != 32:
        return None
    return verifier


def is_verifier(text):
    return parse_verifier(text) is not None


def verify_password(password, stored):
    """True when ``stored`` (a pg_authid.rolpassword value) is a SCRAM-SHA-256 verifier of
    ``password``. Constant-time comparison of both keys."""
    verifier = parse_verifier(stored)
    if verifier is None:
        return False
    stored_key, server_key = _keys(password, verifier.salt, verifier.iterations)
    return hmac.compare_digest(stored_key, verifier.stored_key) \
        and hmac.compare_digest(server_key, verifier.server_key)
