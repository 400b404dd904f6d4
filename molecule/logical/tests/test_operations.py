"""Day two on the logical scenario: sync_monitoring's metrics and timer, playbooks/check.yml on a
healthy environment, on a disabled subscription and on rows that differ on a subscriber.

Runs after test_logical.py (file order) and leaves every subscription enabled and every row as
the publisher has it.
"""

import functools
import re

import pytest

from helpers import check_table as _check, connect, prom_samples, psql, wait_for

PUB, SUB15, SUB17 = "logical-pub", "logical-sub15", "logical-sub17"
PROM = "/var/lib/prometheus/node-exporter/tablesync.prom"
TIMER = "tablesync-exporter.timer"
# (set, target host, target database) of every present set and target
TARGETS = [("audit", SUB17, "shop_copy"), ("shop", SUB15, "shop"), ("shop", SUB17, "shop_copy")]
# subscriber -> {database: [subscriptions]}
SUBSCRIPTIONS = {SUB15: {"shop": ["tablesync_shop"]},
                 SUB17: {"shop_copy": ["tablesync_audit", "tablesync_shop"]}}
VERIFY = "-e tablesync_check_verify=true"


@pytest.fixture(scope="module")
def pub():
    return connect(PUB)


@pytest.fixture(scope="module")
def sub15():
    return connect(SUB15)


@pytest.fixture(scope="module")
def sub17():
    return connect(SUB17)


def _metrics(host):
    return prom_samples(host.file(PROM).content_string)


def _value(samples, metric, **labels):
    return samples.get((metric, frozenset(labels.items())))


def _last_run(host):
    return _value(_metrics(host), "tablesync_exporter_last_run_timestamp_seconds") or 0.0


def _exported_after(host, moment, timeout=90):
    """Wait until the timer has run the exporter after `moment` (epoch seconds); its samples."""
    assert wait_for(lambda: _last_run(host) > moment, timeout=timeout, interval=1), \
        f"{host.backend.get_hostname()}: no exporter run after {moment}"
    return _metrics(host)


def _now(host):
    return float(host.check_output("date +%s.%N"))


def _pub_values(pub, order_id):
    """The publisher's row of sales.orders as SQL literals (customer_id, amount, status)."""
    return psql(pub, "shop", "SELECT format('%s, %s, %L', customer_id, amount, status) "
                             f"FROM sales.orders WHERE id = {order_id}")


def _row(host, db, order_id):
    return psql(host, db, f"SELECT t::text FROM sales.orders t WHERE id = {order_id}")


def _healthy_subscription(sub17, pub):
    running = psql(sub17, "shop_copy", "SELECT count(*) > 0 FROM pg_stat_subscription st JOIN pg_subscription s "
                                       "ON s.oid = st.subid WHERE s.subname = 'tablesync_shop' "
                                       "AND st.relid IS NULL AND st.pid IS NOT NULL "
                                       "AND st.latest_end_time IS NOT NULL")
    active = psql(pub, "postgres", "SELECT count(*) FROM pg_replication_slots "
                                   "WHERE slot_name LIKE 'tablesync_shop_%' AND active")
    return running == "t" and active == "2"


# ---- sync_monitoring ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", [PUB, SUB15, SUB17])
def test_exporter_timer_runs_the_exporter(name):
    host = connect(name)
    timer = host.service(TIMER)
    assert timer.is_enabled and timer.is_running
    # the timer (not only the role's probe) wrote the file, and runs again within its interval
    assert wait_for(lambda: host.file(PROM).exists, timeout=30)
    assert host.file(PROM).user == "tablesync_exporter"  # the pg_monitor role, not the superuser
    _exported_after(host, _now(host), timeout=60)
    result = host.check_output("systemctl show -p Result --value tablesync-exporter.service")
    assert result == "success"


@pytest.mark.parametrize("name", [SUB15, SUB17])
def test_subscriber_metrics(name):
    host = connect(name)
    now = _now(host)
    samples = _exported_after(host, now - 30)
    assert now - _last_run(host) < 60
    for database, subscriptions in SUBSCRIPTIONS[name].items():
        assert _value(samples, "tablesync_exporter_up", database=database) == 1
        exported = sorted({dict(labels)["subscription"] for metric, labels in samples
                           if metric == "tablesync_subscription_enabled"})
        assert exported == subscriptions
        for subscription in subscriptions:
            labels = {"database": database, "subscription": subscription,
                      "set": subscription[len("tablesync_"):]}
            value = functools.partial(_value, samples, **labels)
            assert value("tablesync_subscription_enabled") == 1, labels
            assert value("tablesync_subscription_worker_running") == 1, labels
            assert value("tablesync_subscription_tables_not_ready") == 0, labels
            # PostgreSQL 15+ counts the errors: none on a healthy subscription
            assert value("tablesync_apply_errors_total") == 0, labels
            assert value("tablesync_sync_errors_total") == 0, labels
            assert 0 <= value("tablesync_subscription_lag_bytes") < 16 * 1024 ** 2, labels
            assert 0 <= value("tablesync_subscription_lag_seconds") < 300, labels
            assert 0 <= value("tablesync_subscription_last_message_age_seconds") < 300, labels


def test_publisher_slot_metrics(pub):
    samples = _exported_after(pub, _now(pub) - 30)
    assert _value(samples, "tablesync_exporter_up", database="shop") == 1
    slots = sorted(dict(labels)["slot"] for metric, labels in samples if metric == "tablesync_slot_active")
    assert len(slots) == 3 and sorted(s.rsplit("_", 1)[0] for s in slots) == \
        ["tablesync_audit", "tablesync_shop", "tablesync_shop"]
    for slot in slots:
        labels = {"slot": slot, "database": "shop", "set": slot.split("_")[1]}
        assert _value(samples, "tablesync_slot_active", **labels) == 1
        assert 0 <= _value(samples, "tablesync_slot_lag_bytes", **labels) < 16 * 1024 ** 2
        assert 0 <= _value(samples, "tablesync_slot_retained_bytes", **labels) < 1024 ** 3
        assert _value(samples, "tablesync_slot_wal_status", status="reserved", **labels) == 1


# ---- playbooks/check.yml -----------------------------------------------------------------------

def test_check_healthy_lists_every_target_with_lag():
    rc, out, rows, _breaches = _check()
    assert rc == 0, out[-6000:]
    assert sorted(rows) == sorted(TARGETS), out[-6000:]
    for key, row in rows.items():
        assert row["method"] == "logical" and row["source"] == "logical-pub/shop", row["line"]
        assert row["state"] == "streaming", row["line"]
        # lag known (numbers, not '-') and within the default thresholds
        assert 0 <= int(row["lag_bytes"]) < 1024 ** 3, row["line"]
        assert 0 <= float(row["lag_seconds"]) < 300, row["line"]
        assert row["errors"] == "0", row["line"]
        assert row["schema"] == "same", row["line"]  # column changes followed, none pending
        assert row["rest"] == "-", row["line"]  # not verified without tablesync_check_verify
    assert re.search(r"All 3 sync set targets are within the thresholds", out), out[-3000:]


def test_check_verify_healthy_finds_no_mismatching_rows():
    rc, out, rows, _breaches = _check(*VERIFY.split())
    assert rc == 0, out[-6000:]
    assert sorted(rows) == sorted(TARGETS), out[-6000:]
    for row in rows.values():
        assert row["rest"].startswith("equal"), row["line"]
        assert "rows differ" not in row["rest"], row["line"]
    # audit publishes inserts only: the update test_logical made on the publisher is expected
    assert "publish lacks update, delete, truncate" in rows[TARGETS[0]]["rest"] \
        or rows[TARGETS[0]]["rest"] == "equal"


def test_check_disabled_subscription_fails_until_enabled_again(pub, sub17):
    psql(sub17, "shop_copy", "ALTER SUBSCRIPTION tablesync_shop DISABLE")
    try:
        rc, out, rows, breaches = _check()
        assert rc != 0, out[-6000:]
        assert rows[("shop", SUB17, "shop_copy")]["state"] == "disabled", out[-6000:]
        assert rows[("shop", SUB15, "shop")]["state"] == "streaming"
        assert rows[("audit", SUB17, "shop_copy")]["state"] == "streaming"
        label = "sync set shop, logical-pub/shop -> logical-sub17/shop_copy: "
        assert label + "subscription tablesync_shop is disabled" in breaches, breaches
        # every breach is about that target (its slot turns inactive too)
        assert breaches[0].endswith("thresholds crossed:") and \
            all(b.startswith(label) for b in breaches[1:]), breaches
        # the metrics follow on the next timer run
        samples = _exported_after(sub17, _now(sub17))
        labels = {"database": "shop_copy", "subscription": "tablesync_shop", "set": "shop"}
        assert _value(samples, "tablesync_subscription_enabled", **labels) == 0
        assert _value(samples, "tablesync_subscription_worker_running", **labels) == 0
        assert _value(samples, "tablesync_subscription_enabled", database="shop_copy",
                      subscription="tablesync_audit", set="audit") == 1
    finally:
        psql(sub17, "shop_copy", "ALTER SUBSCRIPTION tablesync_shop ENABLE")
    assert wait_for(lambda: _healthy_subscription(sub17, pub), timeout=120, interval=1)
    rc, out, rows, _breaches = _check()
    assert rc == 0, out[-6000:]
    assert rows[("shop", SUB17, "shop_copy")]["state"] == "streaming"
    samples = _exported_after(sub17, _now(sub17))
    assert _value(samples, "tablesync_subscription_worker_running", database="shop_copy",
                  subscription="tablesync_shop", set="shop") == 1


def test_check_verify_reports_differing_rows_until_repaired(pub, sub15, sub17):
    # one row missing on sub15, one row changed on sub17 (rows test_logical left alone)
    before15, before17 = _row(sub15, "shop", 7), _row(sub17, "shop_copy", 8)
    assert before15 and before17
    psql(sub15, "shop", "DELETE FROM sales.orders WHERE id = 7")
    psql(sub17, "shop_copy", "UPDATE sales.orders SET status = 'tampered' WHERE id = 8")
    try:
        rc, out, rows, breaches = _check(*VERIFY.split())
        assert rc != 0, out[-6000:]
        for key in (("shop", SUB15, "shop"), ("shop", SUB17, "shop_copy")):
            assert rows[key]["state"] == "streaming", rows[key]["line"]
            assert rows[key]["rest"].startswith("1 rows differ (sales.orders)"), rows[key]["line"]
        assert rows[("audit", SUB17, "shop_copy")]["rest"].startswith("equal")
        assert breaches[1:] == [
            f"sync set shop, logical-pub/shop -> {target}: verification found 1 rows differ "
            f"(sales.orders) (threshold 0)" for target in ("logical-sub15/shop", "logical-sub17/shop_copy")
        ], breaches
    finally:
        # repair from the publisher's values
        psql(sub15, "shop", "INSERT INTO sales.orders (id, customer_id, amount, status) "
                            f"VALUES (7, {_pub_values(pub, 7)}) ON CONFLICT (id) DO NOTHING")
        psql(sub17, "shop_copy", "UPDATE sales.orders SET (customer_id, amount, status) = "
                                 f"({_pub_values(pub, 8)}) WHERE id = 8")
    assert (_row(sub15, "shop", 7), _row(sub17, "shop_copy", 8)) == (before15, before17)
    rc, out, rows, _breaches = _check(*VERIFY.split())
    assert rc == 0, out[-6000:]
    assert all(row["rest"].startswith("equal") for row in rows.values()), out[-6000:]
