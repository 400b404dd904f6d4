# -*- coding: utf-8 -*-
# Copyright: (c) 2026, tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL versions: the one place their numbers and their names are written.

Servers report ``server_version_num`` (``150004`` for 15.4); features are gated on the major
version, named as PostgreSQL names it (``'15'``, ``'9.6'``).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

PG95 = 90500
PG96 = 90600
PG10 = 100000
PG11 = 110000
PG12 = 120000
PG13 = 130000
PG14 = 140000
PG15 = 150000
PG16 = 160000
PG17 = 170000
PG18 = 180000


def version_text(num):
    """150004 -> '15', 90600 -> '9.6' (the major version as PostgreSQL names it)."""
    major = num // 10000
    if major >= 10:
        return str(major)
    return '%d.%d' % (major, (num // 100) % 100)


def requirement_message(feature, minimum, have):
    """The one wording of a version gate: names the feature, the version it needs and the one
    the server runs."""
    return '%s requires PostgreSQL %s or later; the server runs PostgreSQL %s.' % (
        feature, version_text(minimum), version_text(have))
