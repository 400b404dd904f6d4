# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one executor every module uses to change a database.

It records every statement in ``queries`` (secrets redacted), runs nothing in check mode, runs
consecutive transactional statements in one transaction (rolled back as a whole on error) and
statements PostgreSQL refuses inside a transaction block in autocommit mode.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import bind, render
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.connection import redact_text
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.errors import TablesyncError

try:
    import psycopg2
except ImportError:  # pragma: no cover
    psycopg2 = None


class ExecutionError(TablesyncError):
    def __init__(self, msg, query):
        super(ExecutionError, self).__init__(msg)
        self.msg = msg
        self.query = query


# Session settings that keep a statement's text out of the server log and pg_stat_activity.
# Only a superuser may change them; for other roles PostgreSQL's own defaults apply (the docs
# of the modules that send secrets recommend a passfile for that case).
_QUIET_SETTINGS = (
    ('log_statement', 'none'),
    ('log_min_error_statement', 'panic'),
    ('log_min_duration_statement', '-1'),
    ('track_activities', 'off'),
)


def _set_quiet(cursor, quiet):
    from psycopg2 import sql
    for name, value in _QUIET_SETTINGS:
        if quiet:
            cursor.execute(sql.SQL('SET {} = {}').format(sql.Identifier(name), sql.Literal(value)))
        else:
            cursor.execute(sql.SQL('RESET {}').format(sql.Identifier(name)))


class Executor(object):
    def __init__(self, conn, check_mode):
        self.conn = conn
        self.check_mode = check_mode
        self.queries = []
        self._secrets = []

    @property
    def changed(self):
        return bool(self.queries)

    def redact(self, text):
        return redact_text(text, self._secrets)

    def add_secrets(self, *values):
        """Further strings to redact from error messages (e.g. a password read from a catalog)."""
        self._secrets.extend(v for v in values if v)

    def run(self, statements):
        """Run statements in order (or only record them in check mode).

        Raises ExecutionError with a redacted message; the open transaction is rolled back, so
        transactional changes are all-or-nothing. Statements that already ran in autocommit mode
        stay applied (PostgreSQL offers no way to undo them in a transaction).
        """
        for stmt in statements:
            self._secrets.extend(stmt.secrets())
            shown = render(stmt)
            self.queries.append(shown)
            if self.check_mode:
                continue
            try:
                if stmt.autocommit:
                    self.conn.commit()
                    self.conn.autocommit = True
                try:
                    with self.conn.cursor() as cur:
                        quiet = bool(stmt.secrets()) and self._is_superuser()
                        if quiet:
                            _set_quiet(cur, True)
                        self._execute(cur, stmt)
                        if quiet:
                            _set_quiet(cur, False)
                finally:
                    if stmt.autocommit:
                        self.conn.autocommit = False
            except psycopg2.Error as e:
                if not self.conn.closed and not self.conn.autocommit:
                    self.conn.rollback()
                raise ExecutionError(self.redact('%s: %s' % (shown, str(e).strip())), shown)

    def _is_superuser(self):
        """Whether this session may keep a statement out of the server log (reported by the
        server at connect time and after SET ROLE)."""
        return self.conn.get_parameter_status('is_superuser') == 'on'

    @staticmethod
    def _execute(cursor, stmt):
        """A statement may run itself with ``execute(cursor)`` (e.g. to send data with COPY, or to
        keep a result); by default its bound text is executed."""
        custom = getattr(stmt, 'execute', None)
        if custom is None:
            cursor.execute(bind(stmt))
        else:
            custom(cursor)

    def commit(self):
        if not self.check_mode:
            self.conn.commit()

    def rollback(self):
        if not self.conn.closed:
            self.conn.rollback()


def apply(module, executor, statements, failure='Nothing was changed: %s', **result):
    """The one apply step of every module: run ``statements`` (nothing in check mode) and
    commit. On a database error the open transaction is rolled back and the task fails with
    ``failure`` (a ``%s`` format for the server's redacted message, or a function of the
    ExecutionError), the statements run so far in ``queries`` and ``result``'s other fields.
    Returns the executor (``changed``, ``queries``)."""
    try:
        executor.run(statements)
        executor.commit()
    except ExecutionError as e:
        executor.rollback()
        result['queries'] = executor.queries
        result.setdefault('changed', False)
        module.fail_json(msg=failure(e) if callable(failure) else failure % e.msg, **result)
    return executor
