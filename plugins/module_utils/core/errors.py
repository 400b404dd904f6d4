# -*- coding: utf-8 -*-
# Copyright: (c) 2026, tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's errors: one base class, so a module can tell its own, expected failures
(bad input, a state it refuses to change, a statement the server refused) from a bug."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class TablesyncError(ValueError):
    """Base of every error raised by module_utils; its text is the message for the user."""


class PlanError(TablesyncError):
    """The desired state cannot be planned from the current one.

    ``messages``: every problem found (one text or a list), joined by ``separator`` into the
    error's text; ``differences``: structured details a module may return with the failure.
    """

    def __init__(self, messages, differences=None, separator='; '):
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        self.differences = differences or {}
        super(PlanError, self).__init__(separator.join(self.messages))
