# -*- coding: utf-8 -*-
"""Unit tests of the exporter the sync_monitoring role ships (imported by path): metric
formatting in the Prometheus text exposition format, atomic writes, collection with a fake
driver."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import importlib.util
import json
import os
import re
import stat

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
PATH = os.path.join(ROOT, 'roles', 'sync_monitoring', 'files', 'tablesync_exporter.py')


def _load():
    spec = importlib.util.spec_from_file_location('tablesync_exporter', PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


exporter = _load()

# Prometheus text format: a sample line
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*"'
                    r'(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*")*)\})? (\S+)$')


def test_metric_names_follow_prometheus_conventions():
    names = exporter.FAMILY_NAMES
    assert len(set(names)) == len(names)
    for name, kind, help_text in exporter.FAMILIES:
        assert re.match(r'^tablesync_[a-z_]+$', name)
        assert kind in ('gauge', 'counter')
        assert name.endswith('_total') == (kind == 'counter'), name
        assert help_text and help_text.endswith('.')
        if 'bytes' in name or 'seconds' in name:
            assert re.search(r'_(bytes|seconds)(_total)?$', name), name  # base unit suffix
    for required in ('tablesync_subscription_lag_bytes', 'tablesync_slot_retained_bytes',
                     'tablesync_slot_active', 'tablesync_subscription_enabled',
                     'tablesync_apply_errors_total', 'tablesync_trigger_queue_depth',
                     'tablesync_trigger_queue_oldest_age_seconds'):
        assert required in names


@pytest.mark.parametrize('value, text', [
    (True, '1'), (False, '0'), (0, '0'), (12345678901234, '12345678901234'), (1.5, '1.5'),
    (2.0, '2'), (0.1, '0.1'), (float('nan'), 'NaN'), (float('inf'), '+Inf'),
    (float('-inf'), '-Inf'), (1e20, '1e+20')])
def test_format_value(value, text):
    assert exporter.format_value(value) == text


def test_label_escaping_and_order():
    assert exporter.format_labels({}) == ''
    assert exporter.format_labels({'set': 'a', 'database': 'b'}) == '{database="b",set="a"}'
    assert exporter.format_labels({'database': 'we"ird\\name\nx'}) == \
        '{database="we\\"ird\\\\name\\nx"}'
    with pytest.raises(ValueError):
        exporter.format_labels({'bad-name': 'x'})


def test_set_of():
    assert exporter.set_of('tablesync_orders', 'subscription') == 'orders'
    assert exporter.set_of('tablesync_orders_1a2b3c4d', 'slot') == 'orders'
    assert exporter.set_of('tablesync_my_set_1a2b3c4d', 'slot') == 'my_set'
    assert exporter.set_of('tablesync_orders_1a2b3c4d', 'subscription') == 'orders_1a2b3c4d'
    assert exporter.set_of('other', 'slot') == ''


def full_metrics():
    results = {
        'shop': {'subscriptions': [], 'trigger_queues': [
            {'name': 'queue', 'depth': 12, 'oldest_age_seconds': 4.25}]},
        'copy': {'subscriptions': [
            {'name': 'tablesync_orders', 'enabled': True, 'worker_running': False,
             'lag_bytes': None, 'lag_seconds': None, 'last_message_age_seconds': None,
             'tables_not_ready': 0, 'apply_errors': 3, 'sync_errors': 0,
             'conflicts': {'update_missing': 2, 'insert_exists': 0}}],
            'trigger_queues': []},
        'gone': None,
    }
    slots = [{'slot_name': 'tablesync_orders_1a2b3c4d', 'database': 'shop', 'active': False,
              'retained_bytes': 2048, 'lag_bytes': 1024, 'safe_wal_size': None,
              'wal_status': 'extended'}]
    return exporter.build_metrics(results, slots, 1700000000.1234, 0.0456)


def test_render_is_valid_exposition_text():
    text = full_metrics().render()
    assert text.endswith('\n')
    seen_type = {}
    for line in text.splitlines():
        if line.startswith('# HELP '):
            name = line.split()[2]
            assert name not in seen_type
        elif line.startswith('# TYPE '):
            _hash, _type, name, kind = line.split()
            seen_type[name] = kind
        else:
            match = SAMPLE.match(line)
            assert match, line
            assert match.group(1) in seen_type  # TYPE comes before the samples
    # unknown values are left out, not exported as 0
    assert 'tablesync_subscription_lag_bytes' not in text
    assert 'tablesync_slot_safe_wal_size_bytes' not in text


def test_render_samples():
    lines = full_metrics().render().splitlines()
    for expected in (
            'tablesync_exporter_up{database="copy"} 1',
            'tablesync_exporter_up{database="gone"} 0',
            'tablesync_exporter_up{database="shop"} 1',
            'tablesync_subscription_enabled{database="copy",set="orders",subscription="tablesync_orders"} 1',
            'tablesync_subscription_worker_running{database="copy",set="orders",subscription="tablesync_orders"} 0',
            'tablesync_apply_errors_total{database="copy",set="orders",subscription="tablesync_orders"} 3',
            'tablesync_subscription_conflicts_total{database="copy",set="orders",subscription="tablesync_orders",'
            'type="update_missing"} 2',
            'tablesync_subscription_conflicts_total{database="copy",set="orders",subscription="tablesync_orders",'
            'type="insert_exists"} 0',
            'tablesync_slot_active{database="shop",set="orders",slot="tablesync_orders_1a2b3c4d"} 0',
            'tablesync_slot_retained_bytes{database="shop",set="orders",slot="tablesync_orders_1a2b3c4d"} 2048',
            'tablesync_slot_lag_bytes{database="shop",set="orders",slot="tablesync_orders_1a2b3c4d"} 1024',
            'tablesync_slot_wal_status{database="shop",set="orders",slot="tablesync_orders_1a2b3c4d",status="extended"} 1',
            'tablesync_trigger_queue_depth{database="shop",set="queue"} 12',
            'tablesync_trigger_queue_oldest_age_seconds{database="shop",set="queue"} 4.25',
            'tablesync_exporter_last_run_timestamp_seconds 1700000000.123',
            'tablesync_exporter_duration_seconds 0.046',
            '# TYPE tablesync_apply_errors_total counter',
            '# TYPE tablesync_slot_active gauge'):
        assert expected in lines, expected
    # families in a fixed order, samples sorted: the output is stable between runs
    assert full_metrics().render() == full_metrics().render()
    ups = [l for l in lines if l.startswith('tablesync_exporter_up')]
    assert ups == sorted(ups)


def test_empty_metrics_render_nothing():
    assert exporter.Metrics().render() == ''
    with pytest.raises(KeyError):
        exporter.Metrics().add('tablesync_unknown', {}, 1)


def test_write_atomic(tmp_path):
    target = tmp_path / 'tablesync.prom'
    target.write_text('old\n')
    exporter.write_atomic(str(target), 'new 1\n')
    assert target.read_text() == 'new 1\n'
    assert stat.S_IMODE(os.stat(str(target)).st_mode) == 0o644
    assert os.listdir(str(tmp_path)) == ['tablesync.prom']  # no temporary file left


def test_write_atomic_failure_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / 'tablesync.prom'
    target.write_text('old\n')

    def broken(src, dst):
        raise OSError('disk full')
    monkeypatch.setattr(exporter.os, 'rename', broken)
    with pytest.raises(OSError):
        exporter.write_atomic(str(target), 'new\n')
    assert target.read_text() == 'old\n'
    assert os.listdir(str(tmp_path)) == ['tablesync.prom']


class FakeError(Exception):
    pass


class FakeCursor(object):
    def __init__(self, conn):
        self.conn = conn
        self.description = None
        self._rows = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, query, params=None):
        self.conn.queries.append(query)
        if "to_regprocedure('tablesync_ddl.status()')" in query:
            self.description, self._rows = [('x',)], [(self.conn.has_queues,)]
        elif 'tablesync_ddl.status()' in query:
            self.description = [('set_name',), ('table_name',), ('last_change',), ('drift_columns',)]
            self._rows = [('a', 'public.t', 3, 1)]
        elif 'to_regclass' in query:
            self.description, self._rows = [('x',)], [(self.conn.has_queues,)]
        elif 'pg_subscription s' in query:
            assert params == {'prefix': 'tablesync_'}
            self.description = [('name',), ('enabled',), ('apply_errors',)]
            self._rows = [('tablesync_a', True, 2)]
        elif 'pg_replication_slots' in query:
            self.description = [('slot_name',), ('database',), ('active',), ('retained_bytes',)]
            self._rows = [('tablesync_a_0123abcd', 'db1', True, 10)]
        elif 'trigger_sets' in query:
            self.description = [('name',), ('depth',), ('oldest_age_seconds',)]
            self._rows = [('q', 1, 0.5)]
        else:
            raise AssertionError(query)

    def fetchone(self):
        return self._rows[0]

    def fetchall(self):
        return self._rows


class FakeConn(object):
    server_version = 150004

    def __init__(self, has_queues):
        self.queries = []
        self.has_queues = has_queues

    def set_session(self, readonly):
        assert readonly

    def cursor(self):
        return FakeCursor(self)

    def rollback(self):
        pass

    def close(self):
        pass


class FakeDriver(object):
    Error = FakeError

    def __init__(self):
        self.connections = []

    def connect(self, **kwargs):
        if kwargs['dbname'] == 'down':
            raise FakeError('connection refused')
        assert kwargs['host'] == '/run/pg' and kwargs['port'] == 5433
        conn = FakeConn(kwargs['dbname'] == 'db2')
        self.connections.append((kwargs, conn))
        return conn


def test_collect_reads_slots_once_and_reports_unreadable_databases():
    driver = FakeDriver()
    config = {'databases': ['db1', 'down', 'db2'], 'host': '/run/pg', 'port': 5433,
              'prefix': 'tablesync_'}
    clock = iter([100.0, 100.5])
    metrics, errors = exporter.collect(config, driver, clock=lambda: next(clock))
    assert errors == ['down: connection refused']
    slot_queries = [q for _kw, c in driver.connections for q in c.queries if 'replication_slots' in q]
    assert len(slot_queries) == 1
    text = metrics.render()
    assert 'tablesync_exporter_up{database="down"} 0' in text
    assert 'tablesync_apply_errors_total{database="db1",set="a",subscription="tablesync_a"} 2' in text
    assert 'tablesync_slot_retained_bytes{database="db1",set="a",slot="tablesync_a_0123abcd"} 10' in text
    assert 'tablesync_trigger_queue_depth{database="db2",set="q"} 1' in text
    assert 'tablesync_trigger_queue_depth{database="db1"' not in text  # no tablesync schema there
    assert 'tablesync_schema_drift_columns{database="db2",set="a",table="public.t"} 1' in text
    assert 'tablesync_schema_last_change{database="db2",set="a",table="public.t"} 3' in text
    assert 'tablesync_schema_last_change{database="db1"' not in text  # no tablesync_ddl schema there
    assert 'tablesync_exporter_duration_seconds 0.5' in text
    assert driver.connections[0][0]['application_name'] == 'tablesync-exporter'


def test_main_writes_the_file(tmp_path, monkeypatch):
    out = tmp_path / 'tablesync.prom'
    config = tmp_path / 'exporter.json'
    config.write_text(json.dumps({'databases': ['db1'], 'host': '/run/pg', 'port': 5433,
                                  'prefix': 'tablesync_', 'output': str(out)}))
    real = exporter.collect
    monkeypatch.setattr(exporter, 'collect', lambda cfg: real(cfg, FakeDriver()))
    assert exporter.main(['--config', str(config)]) == 0
    assert 'tablesync_slot_active' in out.read_text()


def test_main_fails_when_nothing_could_be_read(tmp_path, monkeypatch, capsys):
    config = tmp_path / 'exporter.json'
    config.write_text(json.dumps({'databases': ['down'], 'host': '/run/pg', 'port': 5433,
                                  'output': str(tmp_path / 'x.prom')}))
    real = exporter.collect
    monkeypatch.setattr(exporter, 'collect', lambda cfg: real(cfg, FakeDriver()))
    assert exporter.main(['--config', str(config), '--stdout']) == 1
    captured = capsys.readouterr()
    assert 'cannot read down: connection refused' in captured.err
    assert 'tablesync_exporter_up{database="down"} 0' in captured.out
    assert not (tmp_path / 'x.prom').exists()


def test_rows_keep_json_columns_and_turn_numerics_into_numbers():
    """The PostgreSQL 18 conflict counters arrive as a json object (psycopg2 gives a dict)."""
    import decimal

    class Cursor(object):
        description = [('name',), ('lag',), ('conflicts',)]

        def execute(self, query, params=None):
            pass

        def fetchall(self):
            return [('tablesync_a', decimal.Decimal('12'), {'update_origin_differs': 2}),
                    ('tablesync_b', decimal.Decimal('0.5'), None)]

    assert exporter._rows(Cursor(), 'SELECT') == [
        {'name': 'tablesync_a', 'lag': 12, 'conflicts': {'update_origin_differs': 2}},
        {'name': 'tablesync_b', 'lag': 0.5, 'conflicts': None}]
