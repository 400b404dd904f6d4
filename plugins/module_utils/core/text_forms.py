# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The session settings that fix the text form of every built-in type's values.

A value turned into text under these settings and read back under them on another server is
the same value: dates and timestamps in ISO form with the offset (UTC), intervals in the
``postgres`` style, floats with shortest exact digits, bytea as hex, money in the C locale.
Both the trigger method (capture and apply) and pg_table_compare (checksums of text forms on
two servers) pin them.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

# As pg_proc.proconfig stores them (name=value) and as SET takes them.
TEXT_FORM_SETTINGS = (
    ('DateStyle', 'ISO, YMD'),
    ('IntervalStyle', 'postgres'),
    ('TimeZone', 'UTC'),
    ('extra_float_digits', '3'),
    ('bytea_output', 'hex'),
    ('lc_monetary', 'C'),
)
