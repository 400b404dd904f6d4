"""A bidirectional set (docs/bidirectional.md) between the PostgreSQL 18 publisher and the
PostgreSQL 17 subscriber, added to the running environment by site.yml runs of its own (the
scenario's other sets stay as they are), then removed again.

Runs last (file order): its site.yml runs restart both peers (wal_level on the 17 peer,
track_commit_timestamp on both), which test_logical.py would otherwise count.
"""

import json

import pytest

from helpers import check_table, connect, failures, psql, run_site, wait_for

PUB, SUB17 = "logical-pub", "logical-sub17"
DB = "ledger"
LEDGER = {
    "name": "ledger", "bidirectional": True,
    "source": {"host": PUB, "database": DB},
    "targets": [{"host": SUB17, "database": DB}],
    "tables": ["public.accounts", "public.entries"],
}
WITH_LEDGER = ["-e", json.dumps({"molecule_extra_sets": [LEDGER]})]
VERIFY = ["-e", "tablesync_check_verify=true"]
# each peer writes its own keys (docs/bidirectional.md: keys must never collide); the writes
# rely on the defaults and the foreign key, which the peer's tables get from the source
SOURCE_TABLES = """
CREATE TABLE public.accounts (id int PRIMARY KEY, owner text NOT NULL, balance numeric(12,2) NOT NULL,
                              opened date NOT NULL DEFAULT current_date);
CREATE TABLE public.entries (id bigint PRIMARY KEY, account_id int NOT NULL REFERENCES public.accounts,
                             amount numeric(12,2) NOT NULL, note text, at timestamptz NOT NULL DEFAULT now());
INSERT INTO public.accounts SELECT g, 'owner ' || g, g * 10.5 FROM generate_series(1, 200) g;
INSERT INTO public.entries SELECT g, g % 200 + 1, g * 0.25, CASE WHEN g % 7 = 0 THEN NULL ELSE 'e' || g END
  FROM generate_series(1, 2000) g;
"""
DUMP = {"public.accounts": "SELECT id, owner, balance, opened FROM public.accounts ORDER BY id",
        "public.entries": "SELECT id, account_id, amount, note, at FROM public.entries ORDER BY id"}


@pytest.fixture(scope="module")
def peers():
    """Both peers, the ledger set deployed by site.yml (run twice: the second changes nothing)."""
    pub, sub = connect(PUB), connect(SUB17)
    pub.check_output("runuser -u postgres -- createdb %s", DB)
    psql(pub, DB, SOURCE_TABLES)
    rc, out, _recap = run_site(*WITH_LEDGER)
    assert rc == 0, failures(out)
    rc, out, recap = run_site(*WITH_LEDGER)
    assert rc == 0, failures(out)
    assert all(stats["changed"] == 0 for stats in recap.values()), out[-8000:]
    # check.yml counts apply errors since the last reset: test_operations.py's faults and the
    # restarts above (the 18 publisher's walsenders end, each subscriber's apply worker counts
    # the lost connection as an error) are not what this module checks, so it starts from zero
    for host in (pub, connect("logical-sub15"), sub):
        psql(host, "postgres", "SELECT pg_stat_reset_subscription_stats(NULL)")
    return pub, sub


def _rows(host, table):
    return host.check_output("runuser -u postgres -- psql -XAtq -d %s -c %s", DB, DUMP[table])


def _equal(pub, sub):
    return all(_rows(pub, t) == _rows(sub, t) for t in DUMP)


def _subscriptions(host):
    return psql(host, DB, "SELECT string_agg(s.subname || ':' || s.suborigin, ',' ORDER BY s.subname) "
                          "FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid "
                          "WHERE d.datname = current_database()")


def _apply_errors(host):
    return psql(host, DB, "SELECT coalesce(sum(st.apply_error_count + st.sync_error_count), 0) "
                          "FROM pg_stat_subscription_stats st JOIN pg_subscription s ON s.oid = st.subid "
                          "WHERE s.subname LIKE 'tablesync\\_ledger%'")


def test_each_peer_subscribes_to_the_other_with_origin_none(peers):
    pub, sub = peers
    assert _subscriptions(sub) == "tablesync_ledger:none"
    [name] = [s.split(":")[0] for s in _subscriptions(pub).split(",")]
    assert name.startswith("tablesync_ledger_") and _subscriptions(pub) == name + ":none"
    for host in peers:
        assert psql(host, DB, "SELECT pubname FROM pg_publication") == "tablesync_ledger"
        assert psql(host, "postgres", "SHOW track_commit_timestamp") == "on"
        assert psql(host, "postgres", "SHOW wal_level") == "logical"


def test_the_peer_has_the_sources_whole_table_definition(peers):
    """A peer takes writes of its own: defaults and constraints as on the source (a replica
    gets only columns, NOT NULL and keys)."""
    shape = ("SELECT string_agg(x, ' | ' ORDER BY x) FROM ("
             " SELECT a.attrelid::regclass || '.' || a.attname || ' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid) AS x"
             "   FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum"
             "  WHERE d.adrelid IN ('public.accounts'::regclass, 'public.entries'::regclass)"
             " UNION ALL SELECT conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)"
             "   FROM pg_constraint WHERE conrelid IN ('public.accounts'::regclass, 'public.entries'::regclass)"
             "    AND contype <> 'n') s")   # PostgreSQL 18 also lists NOT NULL as constraints
    pub, sub = peers
    assert "entries_account_id_fkey FOREIGN KEY (account_id) REFERENCES accounts(id)" in psql(sub, DB, shape)
    assert psql(sub, DB, shape) == psql(pub, DB, shape)


def test_rows_were_copied_from_the_source_only(peers):
    pub, sub = peers
    assert psql(sub, DB, "SELECT count(*) FROM public.accounts") == "200"
    assert psql(sub, DB, "SELECT count(*) FROM public.entries") == "2000"
    assert _equal(pub, sub)
    # the return link copied nothing: its tables went straight to ready, with no error
    assert _apply_errors(pub) == "0" and _apply_errors(sub) == "0"


def test_writes_on_both_peers_converge_with_no_loop(peers):
    pub, sub = peers
    psql(pub, DB, "INSERT INTO public.accounts SELECT g, 'pub ' || g, 1 FROM generate_series(1001, 1100) g; "
                  "UPDATE public.accounts SET balance = balance + 1 WHERE id <= 50; "
                  "DELETE FROM public.entries WHERE id BETWEEN 1 AND 100")
    psql(sub, DB, "INSERT INTO public.accounts SELECT g, 'sub ' || g, 2 FROM generate_series(2001, 2100) g; "
                  "INSERT INTO public.entries SELECT 1000000 + g, 2001, g, 'from 17' FROM generate_series(1, 500) g; "
                  "UPDATE public.accounts SET owner = owner || ' (moved)' WHERE id BETWEEN 101 AND 150; "
                  "DELETE FROM public.entries WHERE id BETWEEN 1901 AND 2000")
    assert wait_for(lambda: _equal(pub, sub), timeout=90), "the peers did not converge"
    assert psql(pub, DB, "SELECT count(*) FROM public.accounts") == "400"
    assert psql(pub, DB, "SELECT count(*) FROM public.entries") == "2300"
    assert psql(pub, DB, "SELECT owner FROM public.accounts WHERE id = 120") == "owner 120 (moved)"
    # a change sent back to the peer it came from would fail on its key: no error after a while
    wait_for(lambda: False, timeout=5)
    assert _apply_errors(pub) == "0" and _apply_errors(sub) == "0"
    assert _equal(pub, sub)


def test_check_reports_both_directions_and_verifies_the_peer(peers):
    rc, out, rows, _breaches = check_table(*(WITH_LEDGER + VERIFY))
    assert rc == 0, out[-6000:]
    forward, back = rows[("ledger", SUB17, DB)], rows[("ledger", PUB, DB)]
    assert forward["source"] == f"{PUB}/{DB}" and back["source"] == f"{SUB17}/{DB}"
    assert forward["state"] == back["state"] == "streaming", (forward["line"], back["line"])
    assert forward["rest"].startswith("equal"), forward["line"]


def test_a_row_updated_on_both_peers_is_a_reported_conflict_until_repaired(peers):
    """The documented conflict: both peers update one row before either change arrived. Each
    applies the other's version (the rows differ); the 18 peer counts update_origin_differs;
    check.yml fails naming both, until the winning version is written once on one peer."""
    pub, sub = peers
    names = {host: _subscriptions(host).split(":")[0] for host in peers}
    for host in peers:
        psql(host, DB, f"ALTER SUBSCRIPTION {names[host]} DISABLE")
    for host in peers:
        assert wait_for(lambda: psql(host, DB, "SELECT count(*) FROM pg_stat_subscription s "
                                               "WHERE s.subname LIKE 'tablesync\\_ledger%' AND s.pid IS NOT NULL") == "0",
                        timeout=30)
    psql(pub, DB, "UPDATE public.accounts SET owner = 'written on 18' WHERE id = 7")
    psql(sub, DB, "UPDATE public.accounts SET owner = 'written on 17' WHERE id = 7")
    for host in peers:
        psql(host, DB, f"ALTER SUBSCRIPTION {names[host]} ENABLE")
    owner = "SELECT owner FROM public.accounts WHERE id = 7"
    assert wait_for(lambda: psql(pub, DB, owner) == "written on 17" and psql(sub, DB, owner) == "written on 18",
                    timeout=60), (psql(pub, DB, owner), psql(sub, DB, owner))

    rc, out, rows, breaches = check_table(*(WITH_LEDGER + VERIFY))
    assert rc != 0, out[-6000:]
    conflict = [b for b in breaches if b.startswith(f"sync set ledger, {SUB17}/{DB} -> {PUB}/{DB}: ")]
    assert conflict and "update_origin_differs 1" in conflict[0] and \
        "docs/bidirectional.md" in conflict[0], breaches
    differ = [b for b in breaches if b.startswith(f"sync set ledger, {PUB}/{DB} -> {SUB17}/{DB}: ")]
    assert differ and "1 rows differ (public.accounts)" in differ[0], breaches
    # nothing else of the scenario is affected
    assert all(b.startswith("sync set ledger") for b in breaches[1:]), breaches

    # the repair: the winning version written once, on one peer; then the counters reset
    psql(sub, DB, "UPDATE public.accounts SET owner = 'agreed' WHERE id = 7")
    assert wait_for(lambda: psql(pub, DB, owner) == "agreed", timeout=60)
    assert _equal(pub, sub)
    psql(pub, DB, "SELECT pg_stat_reset_subscription_stats(oid) FROM pg_subscription WHERE subname LIKE 'tablesync\\_ledger%'")
    rc, out, rows, breaches = check_table(*(WITH_LEDGER + VERIFY))
    assert rc == 0, breaches or out[-6000:]
    assert rows[("ledger", SUB17, DB)]["rest"].startswith("equal")


def test_removing_the_set_drops_its_links_on_both_peers(peers):
    pub, sub = peers
    rc, out, _recap = run_site()
    assert rc == 0, failures(out)
    for host in peers:
        assert _subscriptions(host) == ""
        assert psql(host, DB, "SELECT count(*) FROM pg_publication") == "0"
        assert psql(host, "postgres", "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'tablesync\\_ledger%'") == "0"
    # the rows stay where they are
    assert psql(sub, DB, "SELECT count(*) FROM public.accounts") == "400"
