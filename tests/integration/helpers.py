"""Helpers shared by the integration tests of the modules that read one server (the source,
the ``publisher`` cluster) and act on another (the target, the ``subscriber`` cluster)."""
import itertools
import os
import threading

from psycopg2 import sql

_serial = itertools.count(1)

# Names that break naive quoting or string formatting, and names of the maximum length.
HOSTILE_SCHEMA = 'Wé"ird; Schema'
HOSTILE_TABLE = 'Order Items; DROP TABLE x --'
LONG_NAME = 'é' * 31 + 'x'  # 63 bytes


def quoted(schema, name):
    """The playbook spelling of a relation whose name parts may contain dots or quotes."""
    return '"%s"."%s"' % (schema.replace('"', '""'), name.replace('"', '""'))


class DatabasePair(object):
    """A fresh database of the same name on the source and on the target cluster.

    ``prefix`` names the databases (one per test); ``drop()`` removes both."""

    def __init__(self, publisher, subscriber, prefix):
        self.src, self.dst = publisher, subscriber
        self.db = '%s_%d_%d' % (prefix, os.getpid() % 10000, next(_serial))
        for cluster in (self.src, self.dst):
            cluster.execute(sql.SQL('CREATE DATABASE {}').format(sql.Identifier(self.db)))

    def drop(self):
        for cluster in (self.dst, self.src):
            cluster.execute(sql.SQL('DROP DATABASE IF EXISTS {} WITH (FORCE)').format(
                sql.Identifier(self.db)))

    def both(self, text, params=None):
        self.source_sql(text, params)
        self.target_sql(text, params)

    def source_sql(self, text, params=None):
        return self.src.query(text, params, dbname=self.db)

    def target_sql(self, text, params=None):
        return self.dst.query(text, params, dbname=self.db)

    def source_option(self):
        """The module's ``source`` option for the source database."""
        return dict(host=self.src.host, port=self.src.port, dbname=self.db,
                    user=self.src.user, password=self.src.password)

    def module_args(self, **kw):
        """Target connection options, ``source`` and the given options."""
        args = dict(self.dst.login(self.db), source=self.source_option())
        args.update(kw)
        return args


class BackgroundWriter(object):
    """Runs ``step(cursor, i)`` (i = 0, 1, ...) in a thread on its own autocommit connection
    (``connect()``) until the ``with`` block ends: writes that go on while a test migrates or
    rolls out. ``steps``: how many ran; leaving the block fails on the thread's error."""

    def __init__(self, connect, step, pause=0.0):
        self.connect, self.step, self.pause = connect, step, pause
        self.stop, self.error, self.steps = threading.Event(), None, 0
        self.thread = threading.Thread(target=self.run)

    def run(self):
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                while not self.stop.is_set():
                    self.step(cur, self.steps)
                    self.steps += 1
                    if self.pause:
                        self.stop.wait(self.pause)
        except Exception as e:  # pylint: disable=broad-except
            self.error = e
        finally:
            conn.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=60)
        assert self.error is None, self.error
