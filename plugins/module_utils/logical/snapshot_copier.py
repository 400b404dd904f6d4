# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run of a snapshot copy (``pg_subscription initial_copy: snapshot``); the plan is in
``snapshot_copy.py``.

1. Read what the publications publish (one query on the publisher) and the target tables
   (one query on the subscriber, one more for their emptiness); refuse before anything is made.
2. Create the replication slot over a replication connection, exporting its snapshot. That
   connection stays open and idle: the snapshot lives as long as it does.
3. ``jobs`` workers, each with one publisher session in the snapshot (one REPEATABLE READ
   transaction for all its tables) and one subscriber session, take the tables one by one:
   drop the rebuildable indexes, stream ``COPY TO STDOUT`` into ``COPY FROM STDIN`` through a
   pipe, build the indexes, commit.
4. The caller creates the subscription on the slot with ``copy_data = false``.

Any failure before the subscription exists undoes the run: the other workers are cancelled,
the slot is dropped on the publisher and the tables already committed are emptied again
(they were checked empty in step 1); the error says what was undone.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import threading
import time

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.conninfo import build_conninfo
from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.snapshot_copy import (
    PUBLICATIONS_QUERY, PUBLISHED_QUERY, SLOT_EXISTS_QUERY, SnapshotCopyError, check_publications,
    check_slot_free,
    check_failover_publisher, check_publisher_version, merge_published, nonempty_query, plan_tables, slot_command,
    target_query)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import bind, render

try:
    import psycopg2
    import psycopg2.extras
    from psycopg2 import sql
except ImportError:  # pragma: no cover - reported by connection.ensure_psycopg2()
    psycopg2 = None

# bytes moved per read from the pipe into COPY FROM STDIN
PIPE_BUFFER = 1 << 20
ON_PUBLISHER = '  -- on the publisher'


class SnapshotCopier(object):
    """One snapshot copy. ``publisher``: libpq keywords of the publisher (password included);
    ``subscriber``: the module's connection; ``connect_subscriber``: opens another one;
    ``record``: appends a display text to the module's ``queries``; ``redact``: masks
    secrets in error texts."""

    def __init__(self, publisher, subscriber, connect_subscriber, version, record, redact):
        self.publisher = dict(publisher)
        self.publisher.setdefault('connect_timeout', 10)
        self.publisher['application_name'] = 'tablesync.postgresql pg_subscription copy'
        self.subscriber = subscriber
        self.connect_subscriber = connect_subscriber
        self.version = version
        self.record = record
        self.redact = redact
        self.slot = None  # created by this run and not yet owned by a subscription
        self.slot_name = None
        self.publisher_version = None
        self.replication = None
        self.snapshot = None
        self.consistent_lsn = None
        self.workers = []
        self.committed = []
        self.lock = threading.Lock()
        self.results = []

    # -- step 1: read and check --------------------------------------------------------------
    def _publisher_connection(self, replication=False):
        kwargs = {}
        if replication:
            kwargs['connection_factory'] = psycopg2.extras.LogicalReplicationConnection
        try:
            return psycopg2.connect(build_conninfo(self.publisher), **kwargs)
        except psycopg2.Error as e:
            raise SnapshotCopyError('could not connect to the publisher: %s'
                                    % self.redact(str(e).strip()))

    def read_published(self, publications, slot):
        conn = self._publisher_connection()
        try:
            check_publisher_version(conn.server_version)
            self.publisher_version = conn.server_version
            with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                cur.execute(SLOT_EXISTS_QUERY, (slot,))
                check_slot_free(slot, cur.fetchone())
                cur.execute(PUBLICATIONS_QUERY, (list(publications),))
                check_publications(publications, [r['pubname'] for r in cur.fetchall()])
                cur.execute(PUBLISHED_QUERY, (list(publications),))
                return merge_published(cur.fetchall())
        except psycopg2.Error as e:
            raise SnapshotCopyError('could not read the publications on the publisher: %s'
                                    % self.redact(str(e).strip()))
        finally:
            conn.close()

    def read_targets(self, published):
        schemas = [t['schema'] for t in published]
        names = [t['table'] for t in published]
        try:
            with self.subscriber.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                cur.execute(target_query(self.version), (schemas, names))
                targets = cur.fetchall()
                existing = [(t['schema'], t['name'], t['relkind'] == 'p')
                            for t in targets if t['exists']]
                nonempty = set()
                if existing:
                    cur.execute(nonempty_query(existing))
                    nonempty = set('%s.%s' % existing[r['position']][:2] for r in cur.fetchall())
        finally:
            self.subscriber.rollback()
        return targets, nonempty

    def plan(self, publications, slot):
        published = self.read_published(publications, slot)
        targets, nonempty = self.read_targets(published)
        return plan_tables(published, targets, nonempty,
                           self.publisher_version // 10000 == self.version // 10000)

    # -- steps 2 and 3 -------------------------------------------------------------------------
    def create_slot(self, slot, jobs, tables, failover=False):
        """Open the workers' sessions, then create ``slot`` exporting its snapshot (the
        replication connection stays open: the snapshot lives as long as it does); with
        ``failover`` a slot the publisher's standbys synchronise (PostgreSQL 17+)."""
        if failover:
            check_failover_publisher(self.publisher_version)
        try:
            for dummy in range(max(1, min(jobs, tables)) if tables else 0):
                self.workers.append(_Worker(self, self._publisher_connection(),
                                            self.connect_subscriber()))
            self.replication = self._publisher_connection(replication=True)
            command = slot_command(slot, failover)
            self.record(command.as_string(self.replication) + ON_PUBLISHER)
            with self.replication.cursor() as cur:
                cur.execute(command.as_string(self.replication))
                row = cur.fetchone()
                self.consistent_lsn, self.snapshot = row[1], row[2]
            self.slot = slot
        except Exception as e:
            self.release()
            raise SnapshotCopyError(self._message(e))

    def slot_owned_by_subscription(self):
        """The subscription now exists on the slot: dropping it drops the slot."""
        self.slot_name, self.slot = self.slot, None

    def copy_tables(self, plans):
        """Copy ``plans`` in the snapshot. Returns {slot, consistent_lsn, tables: [{name, rows,
        seconds, indexes_rebuilt, indexes_kept}]}; raises SnapshotCopyError (the sessions
        closed, nothing undone yet: see undo())."""
        try:
            self._run_workers(self.workers, plans, self.snapshot)
        except Exception as e:
            self.release()
            raise SnapshotCopyError(self._message(e))
        self.release()
        return dict(slot=self.slot_name or self.slot, consistent_lsn=self.consistent_lsn,
                    tables=sorted(self.results, key=lambda r: r['name']))

    def release(self):
        """Close the workers' sessions and the replication connection (ends the snapshot)."""
        for worker in self.workers:
            worker.close()
        self.workers = []
        if self.replication is not None and not self.replication.closed:
            self.replication.close()

    def _message(self, error):
        if isinstance(error, SnapshotCopyError):
            return str(error)
        return 'the snapshot copy failed: %s' % self.redact(str(error).strip())

    def _run_workers(self, workers, plans, snapshot):
        queue = list(reversed(plans))
        failures = []
        stop = threading.Event()

        def work(worker):
            try:
                worker.begin(snapshot)
                while not stop.is_set():
                    with self.lock:
                        if not queue:
                            return
                        plan = queue.pop()
                    worker.copy_table(plan)
            except Exception as e:  # pylint: disable=broad-except
                with self.lock:
                    failures.append(e)
                stop.set()
                for other in workers:
                    if other is not worker:
                        other.cancel()

        threads = [threading.Thread(target=work, args=(w,)) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise failures[0]

    # -- undo ------------------------------------------------------------------------------------
    def undo(self, reason):
        """Drop the slot and empty the tables this run filled; the message for the user."""
        done = []
        if self.committed:
            tables = sorted(self.committed)
            statement = sql.SQL('TRUNCATE {}').format(sql.SQL(', ').join(
                sql.SQL('{}{}').format(sql.SQL('' if partitioned else 'ONLY '),
                                       sql.Identifier(schema, table))
                for schema, table, partitioned in tables))
            try:
                if self.subscriber.closed:
                    raise SnapshotCopyError('the subscriber connection is closed')
                self.subscriber.rollback()
                with self.subscriber.cursor() as cur:
                    cur.execute(statement)
                self.subscriber.commit()
                self.record(statement.as_string(self.subscriber))
                done.append('the %d table(s) already copied were emptied again' % len(tables))
                self.committed = []
            except (psycopg2.Error, SnapshotCopyError) as e:
                done.append('the table(s) already copied (%s) could NOT be emptied again: %s'
                            % (', '.join('%s.%s' % t[:2] for t in tables), str(e).strip()))
        if self.slot is not None:
            problem = self.drop_slot()
            if problem is None:
                done.append('replication slot %s was dropped on the publisher' % self.slot)
                self.slot = None
            else:
                done.append('replication slot %s could NOT be dropped on the publisher (%s); '
                            'drop it there: SELECT pg_drop_replication_slot(%r)'
                            % (self.slot, problem, self.slot))
        return self.redact(reason + ('. Undone: %s.' % '; '.join(done) if done else ''))

    def drop_slot(self):
        """None, or why the slot could not be dropped (its walsender may need a moment)."""
        statement = 'SELECT pg_catalog.pg_drop_replication_slot(%s)'
        self.record("SELECT pg_catalog.pg_drop_replication_slot('%s')%s" % (self.slot, ON_PUBLISHER))
        try:
            conn = self._publisher_connection()
        except SnapshotCopyError as e:
            return str(e)
        conn.autocommit = True
        deadline = time.time() + 30
        try:
            while True:
                try:
                    with conn.cursor() as cur:
                        cur.execute(statement, (self.slot,))
                    return None
                except psycopg2.Error as e:
                    if 'is active' not in str(e) or time.time() > deadline:
                        return self.redact(str(e).strip())
                    time.sleep(0.2)
        finally:
            conn.close()


class _Worker(object):
    """One publisher session in the snapshot and one subscriber session."""

    def __init__(self, copier, source, target):
        self.copier = copier
        self.source = source
        self.target = target

    def begin(self, snapshot):
        self.source.set_session(isolation_level='REPEATABLE READ', readonly=True)
        with self.source.cursor() as cur:
            cur.execute('SET TRANSACTION SNAPSHOT %s', (snapshot,))

    def cancel(self):
        for conn in (self.source, self.target):
            try:
                if not conn.closed:
                    conn.cancel()
            except psycopg2.Error:
                pass

    def close(self):
        for conn in (self.source, self.target):
            if not conn.closed:
                conn.close()

    def copy_table(self, plan):
        started = time.time()
        with self.target.cursor() as cur:
            # rows copied into a queue of column changes are history: its apply trigger skips them
            cur.execute("SET LOCAL tablesync.copying = 'on'")
            for statement in plan['drops']:
                cur.execute(bind(statement))
            rows = _relay(self.source, bind(plan['copy_out']).as_string(self.source),
                          cur, bind(plan['copy_in']).as_string(self.target))
            for statement in plan['rebuilds']:
                cur.execute(bind(statement))
        self.target.commit()
        statements = plan['drops'] + [plan['copy_in']] + plan['rebuilds']
        with self.copier.lock:
            self.copier.committed.append(tuple(plan['key']))
            self.copier.record(render(plan['copy_out']) + ON_PUBLISHER)
            for statement in statements:
                self.copier.record(render(statement))
            self.copier.results.append(dict(
                name=plan['name'], rows=rows, format=plan['format'],
                seconds=round(time.time() - started, 3),
                indexes_rebuilt=len(plan['rebuilds']), indexes_kept=plan['kept']))


def _relay(source, copy_out, target_cursor, copy_in):
    """Stream ``copy_out`` on the source connection into ``copy_in`` on the target cursor
    through an OS pipe (a thread writes, this one reads); the number of rows copied."""
    read_fd, write_fd = os.pipe()
    reader = os.fdopen(read_fd, 'rb', PIPE_BUFFER)
    writer = os.fdopen(write_fd, 'wb', PIPE_BUFFER)
    failure = []

    def produce():
        try:
            with source.cursor() as cur:
                cur.copy_expert(copy_out, writer)
        except Exception as e:  # pylint: disable=broad-except
            failure.append(e)
        finally:
            try:
                writer.close()
            except (IOError, OSError):
                pass

    thread = threading.Thread(target=produce)
    thread.start()
    try:
        target_cursor.copy_expert(copy_in, reader, size=PIPE_BUFFER)
    except BaseException:
        # unblock a producer waiting on a full pipe, and stop its COPY on the publisher
        reader.close()
        try:
            source.cancel()
        except psycopg2.Error:
            pass
        thread.join()
        raise
    thread.join()
    reader.close()
    if failure:
        # the target saw a short stream as a complete one: its transaction is rolled back
        raise failure[0]
    return target_cursor.rowcount
