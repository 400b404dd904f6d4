"""fdw and trigger sync sets deployed by playbooks/site.yml: source PG15 -> target/consumer PG18."""

import os
import subprocess

import pytest

from helpers import ANSI, INVENTORY, connect, failures, hosts, pg_unit, psql, run_site, wait_for

testinfra_hosts = [f"podman://{name}" for name in hosts()]

SRC, DST = "methods-src", "methods-dst"
FLUSH = "tablesync-trigger-flush-orders"
REFRESH = "tablesync-fdw-refresh-stock"
# whole-table fingerprints, the same query on both sides
ORDERS = ("SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, ',' ORDER BY id)), '') "
          "FROM sales.orders t")
LINES = ("SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, ',' ORDER BY order_id, line)), '') "
         "FROM sales.order_lines t")


@pytest.fixture(scope="module")
def src():
    return connect(SRC)


@pytest.fixture(scope="module")
def dst():
    return connect(DST)


def _name(host):
    return host.backend.get_hostname()


def _same(src, dst, sql=ORDERS):
    return psql(src, "shop", sql) == psql(dst, "shop_copy", sql)


def _playbook(path, *args):
    env = dict(os.environ)
    config = os.path.join(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", ""), "ansible.cfg")
    if os.path.exists(config):
        env["ANSIBLE_CONFIG"] = config
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", PY_COLORS="0")
    proc = subprocess.run(["ansible-playbook", "-i", os.path.dirname(INVENTORY), path, *args],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=600, check=False)
    return proc.returncode, ANSI.sub("", proc.stdout)


def test_servers_listen_on_the_network(host):
    """The fdw source and the trigger target are reached over TCP: both listen."""
    assert psql(host, "postgres", "SHOW listen_addresses") == "*"
    assert psql(host, "postgres", "SELECT count(*) FROM pg_settings WHERE pending_restart") == "0"


def test_no_publication_for_fdw_or_trigger_sets(host):
    """fdw and trigger sets never get publications, slots or logical decoding."""
    db = "shop" if _name(host) == SRC else "postgres"
    assert psql(host, db, "SELECT count(*) FROM pg_publication") == "0"
    assert psql(host, "postgres", "SELECT count(*) FROM pg_replication_slots") == "0"


def test_fdw_consumer_reads_and_writes_through_the_foreign_table(src, dst):
    assert psql(dst, "reporting", "SELECT count(*) FROM tablesync_fdw_inv.items") == \
        psql(src, "shop", "SELECT count(*) FROM inv.items")
    psql(dst, "reporting", "INSERT INTO tablesync_fdw_inv.items VALUES (1001, 'via fdw', 7)")
    assert psql(src, "shop", "SELECT name || '/' || qty FROM inv.items WHERE id = 1001") == "via fdw/7"
    psql(dst, "reporting", "UPDATE tablesync_fdw_inv.items SET qty = 8 WHERE id = 1001")
    assert psql(src, "shop", "SELECT qty FROM inv.items WHERE id = 1001") == "8"
    psql(src, "shop", "INSERT INTO inv.items VALUES (1002, 'on the source', 1)")
    assert psql(dst, "reporting",
                "SELECT name FROM tablesync_fdw_inv.items WHERE id = 1002") == "on the source"


def test_fdw_local_copy_refresh(src, dst):
    """The local copy (materialized view) gets new source rows from its refresh unit."""
    assert dst.service(f"{REFRESH}.timer").is_enabled
    assert dst.service(f"{REFRESH}.timer").is_running
    psql(src, "shop", "INSERT INTO inv.items VALUES (2001, 'for the copy', 3) "
                      "ON CONFLICT (id) DO NOTHING")
    assert psql(dst, "reporting", "SELECT relkind FROM pg_class WHERE oid = 'inv.items'::regclass") == "m"
    dst.check_output(f"systemctl start {REFRESH}.service")
    assert psql(dst, "reporting", "SELECT name FROM inv.items WHERE id = 2001") == "for the copy"
    assert psql(dst, "reporting", "SELECT count(*) FROM inv.items") == \
        psql(src, "shop", "SELECT count(*) FROM inv.items")


def test_trigger_backfill_and_flush(src, dst):
    assert src.service(f"{FLUSH}.timer").is_running
    assert wait_for(lambda: _same(src, dst) and _same(src, dst, LINES), timeout=30)
    psql(src, "shop", "INSERT INTO sales.orders VALUES (501, 1, 9.99, 'new')")
    psql(src, "shop", "UPDATE sales.orders SET status = 'paid' WHERE id IN (1, 2, 3)")
    psql(src, "shop", "DELETE FROM sales.orders WHERE id = 4")
    psql(src, "shop", "INSERT INTO sales.order_lines VALUES (501, 0, 'sku-new')")
    assert wait_for(lambda: psql(dst, "shop_copy", "SELECT count(*) FROM sales.orders "
                                 "WHERE id = 501 OR (id = 4) OR (id <= 3 AND status = 'paid')") == "4",
                    timeout=30)
    assert psql(dst, "shop_copy", "SELECT count(*) FROM sales.orders WHERE id = 4") == "0"
    # the line was written after the orders: a flush may have run in between, the next one
    # brings it
    assert wait_for(lambda: _same(src, dst) and _same(src, dst, LINES), timeout=30)


def test_trigger_target_down_source_writes_go_on(src, dst):
    dst.check_output(f"systemctl stop {pg_unit(dst)}")
    try:
        for i in range(5):
            psql(src, "shop", f"INSERT INTO sales.orders VALUES ({600 + i}, 2, {i}.5, 'offline')")
        psql(src, "shop", "UPDATE sales.orders SET amount = amount + 1 WHERE id BETWEEN 10 AND 20")
        psql(src, "shop", "DELETE FROM sales.orders WHERE id BETWEEN 30 AND 35")
        psql(src, "shop", "DELETE FROM sales.order_lines WHERE order_id = 2")
        # a flush runs while the target is down: it fails and keeps the queue
        src.run(f"systemctl start {FLUSH}.service")
        assert int(psql(src, "shop", "SELECT count(*) FROM tablesync.trigger_changes")) > 0
    finally:
        dst.check_output(f"systemctl start {pg_unit(dst)}")
    assert wait_for(lambda: _same(src, dst) and _same(src, dst, LINES), timeout=60, interval=1)
    assert wait_for(lambda: psql(src, "shop", "SELECT count(*) FROM tablesync.trigger_changes") == "0",
                    timeout=30)


MALLORY_SETUP = """
CREATE TABLE public.mallory_log (what text);
GRANT INSERT ON public.mallory_log TO PUBLIC;
CREATE FUNCTION public.evil_log(what text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.mallory_log VALUES (what);
  BEGIN EXECUTE 'ALTER ROLE tablesync_mallory SUPERUSER'; EXCEPTION WHEN OTHERS THEN NULL; END;
END $$;
CREATE FUNCTION public.evil_plus(a bigint, b bigint) RETURNS bigint LANGUAGE plpgsql
  AS $$ BEGIN PERFORM public.evil_log('+'); RETURN a OPERATOR(pg_catalog.+) b; END $$;
CREATE OPERATOR public.+ (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = public.evil_plus);
CREATE FUNCTION public.evil_eq(a bigint, b integer) RETURNS boolean LANGUAGE plpgsql
  AS $$ BEGIN PERFORM public.evil_log('='); RETURN a OPERATOR(pg_catalog.=) b; END $$;
CREATE OPERATOR public.= (LEFTARG = bigint, RIGHTARG = integer, FUNCTION = public.evil_eq);
CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE plpgsql
  AS $$ BEGIN PERFORM public.evil_log('now'); RETURN pg_catalog.now(); END $$;
CREATE FUNCTION public.coalesce_hijack() RETURNS void LANGUAGE sql AS $$ SELECT 1 $$;
ALTER DATABASE shop SET search_path = public, pg_catalog;
"""


def test_database_owner_cannot_hijack_the_flush_and_exporter_units(src, dst):
    """Issue 13, finding 2, against the real units: the owner of the source database puts
    operators and now() in public and makes public come first in the database's search_path;
    the flush timer's unit (psql, run as postgres) and the exporter's unit still call none of
    them, and the rows still arrive."""
    psql(src, "postgres", "CREATE ROLE tablesync_mallory LOGIN")
    psql(src, "postgres", "ALTER DATABASE shop OWNER TO tablesync_mallory")
    try:
        psql(src, "shop", "SET ROLE tablesync_mallory; " + MALLORY_SETUP)
        psql(src, "shop", "INSERT INTO sales.orders VALUES (701, 1, 7.01, 'hijack?')")
        src.check_output(f"systemctl start {FLUSH}.service")
        src.check_output("systemctl start tablesync-exporter.service")
        assert wait_for(lambda: psql(dst, "shop_copy", "SELECT count(*) FROM sales.orders WHERE id = 701") == "1",
                        timeout=30)
        assert psql(src, "shop", "SELECT count(*) FROM public.mallory_log") == "0"
        assert psql(src, "postgres", "SELECT rolsuper FROM pg_roles WHERE rolname = 'tablesync_mallory'") == "f"
    finally:
        psql(src, "shop", "ALTER DATABASE shop RESET search_path")
        psql(src, "shop", "DROP TABLE IF EXISTS public.mallory_log; DROP OPERATOR IF EXISTS public.+ (bigint, bigint); "
                          "DROP OPERATOR IF EXISTS public.= (bigint, integer); DROP FUNCTION IF EXISTS "
                          "public.evil_plus(bigint, bigint), public.evil_eq(bigint, integer), public.now(), "
                          "public.coalesce_hijack(), public.evil_log(text)")
        psql(src, "postgres", "ALTER DATABASE shop OWNER TO postgres")
        psql(src, "postgres", "DROP ROLE tablesync_mallory")


def test_monitoring_timer_and_metrics(host):
    assert host.service("tablesync-exporter.timer").is_enabled
    assert host.service("tablesync-exporter.timer").is_running
    prom = "/var/lib/prometheus/node-exporter/tablesync.prom"
    assert wait_for(lambda: host.file(prom).exists, timeout=30)
    text = host.file(prom).content_string
    metrics = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert metrics, text
    assert any(line.startswith("tablesync_") for line in metrics), text


def test_check_playbook_healthy():
    root = os.path.abspath(os.path.join(os.environ["MOLECULE_SCENARIO_DIRECTORY"], "..", ".."))
    rc, out = _playbook(os.path.join(root, "playbooks", "check.yml"))
    assert rc == 0, out[-6000:]


def test_trigger_set_follows_a_migration_while_the_timer_flushes(src, dst):
    """An application migration on the source (15) reaches the target (18) through the flush
    timer: the column added with a default (existing rows get it), a rename and a widening,
    rows written before and after it; nothing run by hand on the target."""
    psql(src, "shop", "INSERT INTO sales.order_lines VALUES (900, 0, 'before')")
    psql(src, "shop", "ALTER TABLE sales.order_lines ADD COLUMN qty int NOT NULL DEFAULT 1")
    psql(src, "shop", "UPDATE sales.order_lines SET qty = 5 WHERE order_id = 900")
    psql(src, "shop", "ALTER TABLE sales.order_lines RENAME COLUMN sku TO article")
    psql(src, "shop", "ALTER TABLE sales.order_lines ALTER COLUMN qty TYPE bigint")
    psql(src, "shop", "INSERT INTO sales.order_lines VALUES (901, 0, 'after', 5000000000)")
    columns = ("SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum) "
               "FROM pg_attribute WHERE attrelid = 'sales.order_lines'::regclass AND attnum > 0 AND NOT attisdropped")
    assert wait_for(lambda: _same(src, dst, LINES), timeout=60, interval=1)
    assert psql(dst, "shop_copy", columns) == psql(src, "shop", columns) == \
        "order_id integer, line integer, article text, qty bigint"
    assert psql(src, "shop", "SELECT coalesce(last_error, '') FROM tablesync.trigger_sets") == ""


def test_timers_of_sets_gone_from_the_inventory_are_removed(src, dst):
    """Last (it takes both sets out of the inventory). Neither host has a set of the fdw or
    trigger method then; the flush timer and the refresh timer they left still go (the server
    role's one listing of the run's timers sends the roles back to them), and the next run
    changes nothing: the roles skip both hosts."""
    assert src.file(f"/etc/systemd/system/{FLUSH}.timer").exists
    assert dst.file(f"/etc/systemd/system/{REFRESH}.timer").exists
    # (the consumer's local copy goes with its set: naming a set that is gone is refused)
    no_sets = '{"tablesync_sync_sets": [], "fdw_consumer_local_copies": {}}'
    rc, out, _recap = run_site("-e", no_sets)
    assert rc == 0, failures(out)
    for host, unit in ((src, FLUSH), (dst, REFRESH)):
        assert not host.file(f"/etc/systemd/system/{unit}.timer").exists
        assert not host.file(f"/etc/systemd/system/{unit}.service").exists
        assert not host.service(f"{unit}.timer").is_running
    rc, out, recap = run_site("-e", no_sets)
    assert rc == 0, failures(out)
    assert recap and all(r["changed"] == 0 for r in recap.values()), recap
    assert "The sets of this host, their timers" in out
    # skipped as a whole: none of the role's tasks after the gate ran on either host
    assert "tablesync.postgresql.trigger_source : Check the role's inputs" not in out
    assert "tablesync.postgresql.fdw_consumer : Check the role's inputs" not in out
