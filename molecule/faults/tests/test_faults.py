"""Faults under a running write workload (docs/faults.md): after each one, the whole tables of
both sync sets are compared on the source and the target (row count and an md5 over every row
in key order), so a lost, duplicated or stale row fails the test.

The tests run in file order and share the writer started by the ``writer`` fixture.
"""

import json
import os
import re
import signal
import subprocess
import time

import pytest

from helpers import ANSI, INVENTORY, connect, pg_unit, pg_version, psql, wait_for

SRC, DST = "faults-src", "faults-dst"
NETWORK = "tablesync-molecule-faults"
SUBSCRIPTION = "tablesync_orders"
FLUSH = "tablesync-trigger-flush-stock"
PHASE = ("-e", "faults_phase=added")
# (source database, target database, table, key order) of every synced table
TABLES = (
    ("shop", "shop", "app.orders", "id"),
    ("shop", "shop", "app.events", "t::text"),
    ("shop", "stock_copy", "app.stock", "id"),
)
ADDED = ("shop", "shop", "app.customers", "id")


def fingerprint(host, db, table, order):
    return psql(host, db, f"SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, ',' "
                          f"ORDER BY {order})), '') FROM {table} t")


@pytest.fixture(scope="module")
def src():
    return connect(SRC)


@pytest.fixture(scope="module")
def dst():
    return connect(DST)


def _env():
    env = dict(os.environ)
    config = os.path.join(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", ""), "ansible.cfg")
    if os.path.exists(config):
        env["ANSIBLE_CONFIG"] = config
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", PY_COLORS="0", PYTHONUNBUFFERED="1")
    return env


def changed_tasks(out):
    """The tasks that reported a change, with their item lines, from ansible-playbook output."""
    lines, task = [], None
    for line in out.splitlines():
        if line.startswith("TASK ["):
            task = line
        elif line.startswith("changed:"):
            lines.append("%s\n    %s" % (task, line[:300]))
    return "changed tasks:\n" + "\n".join(lines) + "\n"


def run_site(*args):
    """site.yml (the scenario's converge.yml) with a timeout for slow, shared CI machines.

    Returns (returncode, output, {host: {ok, changed, failed, ...}}) from the play recap.
    """
    proc = subprocess.run(["ansible-playbook", "-i", os.path.dirname(INVENTORY),
                           os.path.join(os.environ["MOLECULE_SCENARIO_DIRECTORY"], "converge.yml"),
                           *args],
                          env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=2400, check=False)
    out = ANSI.sub("", proc.stdout)
    recap = {}
    for line in out.splitlines():
        m = re.match(r"^(\S+)\s+:\s+(ok=.*)$", line)
        if m:
            recap[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    return proc.returncode, out, recap


def check_playbook(*args):
    root = os.path.abspath(os.path.join(os.environ["MOLECULE_SCENARIO_DIRECTORY"], "..", ".."))
    proc = subprocess.run(["ansible-playbook", "-i", os.path.dirname(INVENTORY),
                           os.path.join(root, "playbooks", "check.yml"), *PHASE, *args],
                          env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=1200, check=False)
    return proc.returncode, ANSI.sub("", proc.stdout)


def module(host, name, args, check=False):
    """Run a module of the collection on a host (as postgres), return its result."""
    env = _env()
    # JSON on stdout (a notification callback such as profile_tasks may print after it)
    env.update(ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="json")
    cmd = ["ansible", "-i", os.path.dirname(INVENTORY), host, "-b", "--become-user", "postgres",
           "-m", f"tablesync.postgresql.{name}", "-a", json.dumps(args)]
    if check:
        cmd.append("--check")
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=300, check=False)
    start = proc.stdout.find("{")
    assert start >= 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out, _end = json.JSONDecoder().raw_decode(proc.stdout[start:])
    return out["plays"][0]["tasks"][0]["hosts"][host]


# ---- the writer -----------------------------------------------------------------------------

def written(src):
    """Transactions the writer has committed so far (the sequence's position)."""
    return int(psql(src, "shop", "SELECT last_value FROM app.seq"))


def wait_written(src, more=25, timeout=120):
    """Wait until the writer committed ``more`` further transactions (it keeps writing)."""
    start = written(src)
    assert wait_for(lambda: written(src) >= start + more, timeout=timeout, interval=0.5), \
        f"the writer did not go on: {start} -> {written(src)}"


def pause(src):
    src.check_output("touch /var/tmp/writer.pause")
    assert wait_for(lambda: src.file("/var/tmp/writer.paused").exists, timeout=60, interval=0.2)


def resume(src):
    src.check_output("rm -f /var/tmp/writer.pause")
    assert wait_for(lambda: not src.file("/var/tmp/writer.paused").exists, timeout=60,
                    interval=0.2)


def start_writer(src):
    src.check_output("rm -f /var/tmp/writer.stop /var/tmp/writer.pause /var/tmp/writer.paused")
    subprocess.run(["podman", "exec", "-d", "-u", "postgres", SRC, "/usr/local/bin/faults-writer"],
                   check=True)
    wait_written(src, 10)


@pytest.fixture(scope="module", autouse=True)
def writer(src):
    start_writer(src)
    yield
    src.check_output("touch /var/tmp/writer.stop")


def wait_synced(src, dst, tables, timeout=240):
    """With the writer paused: wait until every table is the same on both sides."""
    # the trigger set's queue is applied by its flush timer; start one now
    src.run(f"systemctl start --no-block {FLUSH}.service")
    expected = {t[2]: fingerprint(src, t[0], t[2], t[3]) for t in tables}

    def actual():
        return {t[2]: fingerprint(dst, t[1], t[2], t[3]) for t in tables}
    assert wait_for(lambda: actual() == expected, timeout=timeout, interval=1), \
        f"source {expected} != target {actual()}"


def assert_synced(src, dst, tables=TABLES, timeout=240):
    """Pause the writer, wait until every table is the same on both sides, resume it."""
    pause(src)
    try:
        wait_synced(src, dst, tables, timeout)
    finally:
        resume(src)


def _slot(src):
    return psql(src, "postgres", "SELECT slot_name FROM pg_replication_slots "
                                 "WHERE slot_name LIKE 'tablesync\\_orders\\_%'")


def _address(container):
    address = subprocess.run(
        ["podman", "inspect", container, "--format",
         "{{(index .NetworkSettings.Networks \"%s\").IPAddress}}" % NETWORK],
        check=True, stdout=subprocess.PIPE, text=True).stdout.strip()
    assert re.match(r"^\d+\.\d+\.\d+\.\d+$", address), address
    return address


# ---- the faults -----------------------------------------------------------------------------

def test_in_sync_with_the_writer_running(src, dst):
    assert_synced(src, dst)
    assert psql(dst, "shop", f"SELECT count(*) FROM pg_subscription WHERE subname = '{SUBSCRIPTION}'") == "1"


def test_target_server_stopped_then_started(src, dst):
    dst.check_output(f"systemctl stop {pg_unit(dst)}")
    try:
        wait_written(src)  # the source goes on writing while its target is down
        assert not dst.service(pg_unit(dst)).is_running
    finally:
        dst.check_output(f"systemctl start {pg_unit(dst)}")
    assert_synced(src, dst)


def test_network_cut_then_restored(src, dst):
    address = _address(DST)
    subprocess.run(["podman", "network", "disconnect", NETWORK, DST], check=True)
    try:
        wait_written(src)
        # nothing reaches the target: the source cannot connect to it
        assert src.run(f"pg_isready -q -t 3 -h {address}").rc != 0
    finally:
        # same address: pg_hba.conf on the publisher admits the subscriber by its address
        subprocess.run(["podman", "network", "connect", "--ip", address, NETWORK, DST], check=True)
    assert_synced(src, dst)


def test_publisher_restarted(src, dst):
    before = psql(src, "postgres", "SELECT pg_postmaster_start_time()")
    src.check_output(f"systemctl restart {pg_unit(src)}")
    assert psql(src, "postgres", "SELECT pg_postmaster_start_time()") != before
    wait_written(src)
    assert_synced(src, dst)


def test_converge_killed_half_way_then_run_again(src, dst):
    """A table joins the logical set; the converge adding it is killed while the subscription
    is refreshed; the next run converges and the one after changes nothing."""
    args = ["ansible-playbook", "-i", os.path.dirname(INVENTORY),
            os.path.join(os.environ["MOLECULE_SCENARIO_DIRECTORY"], "converge.yml"), *PHASE]
    proc = subprocess.Popen(args, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if "Refresh the subscriptions whose set's tables changed" in line:
                time.sleep(2)  # into the refresh and the wait for the copy
                break
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)[-3000:]
    assert any("Refresh the subscriptions" in line for line in seen), "".join(seen)[-3000:]
    # the publication already has the table, the subscription (perhaps) not yet
    assert "app.customers" in psql(src, "shop", "SELECT string_agg(schemaname || '.' || tablename, ',') "
                                                "FROM pg_publication_tables WHERE pubname = 'tablesync_orders'")

    rc, out, _recap = run_site(*PHASE)
    assert rc == 0, out[-6000:]
    # idempotent: with the writer paused and the trigger queue applied (site.yml flushes a
    # non-empty queue of a trigger set, which is a change)
    pause(src)
    try:
        wait_synced(src, dst, TABLES + (ADDED,))
        rc, out, recap = run_site(*PHASE)
    finally:
        resume(src)
    assert rc == 0, out[-6000:]
    assert all(r["changed"] == 0 and r["failed"] == 0 for r in recap.values()), \
        changed_tasks(out) + out[-4000:]
    assert psql(dst, "shop", "SELECT string_agg(srrelid::regclass::text || ':' || srsubstate::text, ',' "
                             "ORDER BY srrelid::regclass::text) FROM pg_subscription_rel") == \
        "app.customers:r,app.events:r,app.orders:r,tablesync_ddl.orders:r"
    # no table synchronisation slot of the interrupted copy is left on the publisher
    assert wait_for(lambda: psql(src, "postgres", "SELECT count(*) FROM pg_replication_slots "
                                                  "WHERE slot_name LIKE 'pg\\_%\\_sync\\_%'") == "0",
                    timeout=60)
    assert_synced(src, dst, TABLES + (ADDED,))


def test_publisher_host_restarted_while_the_playbook_runs(src, dst):
    """The source's host shuts down (an orderly systemd shutdown of the whole container) while
    site.yml works on it and stays down until the run has ended: the run fails and names the
    host; the host boots again with its address (as a server keeps its address across a
    reboot), PostgreSQL and the trigger set's flush timer start by themselves, and the re-run
    completes and changes nothing else."""
    address = _address(SRC)
    args = ["ansible-playbook", "-i", os.path.dirname(INVENTORY),
            os.path.join(os.environ["MOLECULE_SCENARIO_DIRECTORY"], "converge.yml"), *PHASE]
    proc = subprocess.Popen(args, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    seen = []
    down = booted = False
    try:
        for line in proc.stdout:
            seen.append(line)
            if not down and "Replication role with SELECT on exactly the published tables" in line:
                subprocess.run(["podman", "stop", "-t", "60", SRC], check=True,
                               stdout=subprocess.DEVNULL)
                down = True
        proc.wait(timeout=1800)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        if down:
            # the address pinned, so that the host comes back with the one it had
            subprocess.run(["podman", "network", "disconnect", NETWORK, SRC], check=True)
            subprocess.run(["podman", "network", "connect", "--ip", address, NETWORK, SRC],
                           check=True)
            subprocess.run(["podman", "start", SRC], check=True, stdout=subprocess.DEVNULL)
            # the boot: PostgreSQL started by systemd (the unit is active once pg_ctlcluster
            # returns, a moment after the server accepts connections), then the writer again
            # (the shutdown ended it) - also when an assertion below fails, for the next tests
            booted = wait_for(lambda: src.run(f"systemctl is-active --quiet {pg_unit(src)}")
                              .rc == 0 and src.run("pg_isready -q -t 2").rc == 0,
                              timeout=180, interval=1)
            if booted:
                start_writer(src)
    out = ANSI.sub("", "".join(seen))
    assert down, out[-6000:]
    assert booted, "the source's PostgreSQL did not come back after the boot"
    assert proc.returncode != 0, out[-6000:]
    assert re.search(r"^faults-src\s+:.*(unreachable|failed)=[1-9]", out, re.M), out[-6000:]
    assert _address(SRC) == address
    assert src.service(f"{FLUSH}.timer").is_running

    rc, out, recap = run_site(*PHASE)
    assert rc == 0, out[-6000:]
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in recap.values()), out[-6000:]
    assert_synced(src, dst, TABLES + (ADDED,))


def test_slot_lost_while_the_subscriber_stays_down(src, dst):
    slot = _slot(src)
    assert slot.startswith("tablesync_orders_"), slot
    dst.check_output(f"systemctl stop {pg_unit(dst)}")
    started = False
    try:
        # the publisher goes on writing; more WAL than max_slot_wal_keep_size (64MB) follows
        def lost():
            src.check_output("runuser -u postgres -- psql -XAtq -c 'SELECT pg_switch_wal()' "
                             "-c 'SELECT pg_switch_wal()' -c 'SELECT pg_switch_wal()' "
                             "-c CHECKPOINT")
            return psql(src, "postgres", f"SELECT wal_status FROM pg_replication_slots "
                                         f"WHERE slot_name = '{slot}'") == "lost"
        assert wait_for(lost, timeout=180, interval=1)
        dst.check_output(f"systemctl start {pg_unit(dst)}")
        started = True
    finally:
        if not started:
            dst.check_output(f"systemctl start {pg_unit(dst)}")
    wait_written(src, 10)

    # the check names the dead slot
    rc, out = check_playbook()
    assert rc != 0, out[-6000:]
    # the cause from invalidation_reason where the server has it (17+), else from wal_status
    assert f"replication slot {slot} was invalidated (" in out, out[-6000:]
    assert "the WAL it needed was removed, see max_slot_wal_keep_size" in out, out[-6000:]

    # a plain converge refuses to go on and says what to do
    rc, out, _recap = run_site(*PHASE)
    assert rc != 0, out[-6000:]
    assert slot in out and "logical_subscriber_on_lost_slot=rebuild" in out, out[-6000:]

    # the documented re-run rebuilds the subscription
    rc, out, _recap = run_site(*PHASE, "-e", "logical_subscriber_on_lost_slot=rebuild")
    assert rc == 0, out[-6000:]
    assert psql(src, "postgres", f"SELECT wal_status <> 'lost' FROM pg_replication_slots "
                                 f"WHERE slot_name = '{slot}'") == "t"
    assert_synced(src, dst, TABLES + (ADDED,))


def _apply_errors(dst):
    return int(psql(dst, "shop", "SELECT coalesce(sum(apply_error_count), 0) "
                                 "FROM pg_stat_subscription_stats"))


def _last_error(dst):
    result = module(DST, "pg_sync_info", {"login_db": "shop", "gather": ["subscriptions"],
                                          "server_log": "auto"})
    assert "subscriptions.last_apply_error" not in result["unavailable"], result
    sub = [s for s in result["subscriptions"] if s["name"] == SUBSCRIPTION][0]
    return sub["last_apply_error"]


def _reset_error_counts(dst):
    psql(dst, "shop", "SELECT pg_stat_reset_subscription_stats(oid) FROM pg_subscription")


def test_apply_conflict_resolved_by_fixing_the_row(src, dst):
    errors = _apply_errors(dst)
    psql(dst, "shop", "INSERT INTO app.orders VALUES (-1, 1, 'made on the subscriber')")
    psql(src, "shop", "INSERT INTO app.orders VALUES (-1, 2, 'made on the publisher')")
    assert wait_for(lambda: _apply_errors(dst) > errors, timeout=120, interval=1)
    error = _last_error(dst)
    # PostgreSQL 15-17: "Key (id)=(-1) already exists."; 18: a conflict=insert_exists message,
    # "Key already exists in unique index ..." and the key on the next line (rows left out)
    assert "Key (id)=(-1)" in error["detail"] and "already exists" in error["detail"], error
    assert error["conflict"] == ("insert_exists" if int(pg_version(dst)) >= 18 else None), error
    assert "made on the subscriber" not in error["detail"], error
    assert error["relation"] == "app.orders" and error["message_type"] == "INSERT", error
    assert re.match(r"^[0-9A-F]+/[0-9A-F]+$", error["finish_lsn"]), error
    assert error["resolved"] is False, error

    # the fix: the subscriber's row goes, the publisher's arrives
    psql(dst, "shop", "DELETE FROM app.orders WHERE id = -1")
    assert wait_for(lambda: psql(dst, "shop", "SELECT note FROM app.orders WHERE id = -1")
                    == "made on the publisher", timeout=120, interval=1)
    assert _last_error(dst)["resolved"] is True
    _reset_error_counts(dst)
    assert_synced(src, dst, TABLES + (ADDED,))


def test_apply_conflict_resolved_by_skipping_the_transaction(src, dst):
    errors = _apply_errors(dst)
    # the row is already there, identical: the publisher's transaction can be skipped
    psql(dst, "shop", "INSERT INTO app.orders VALUES (-2, 2, 'loaded on both sides')")
    psql(src, "shop", "INSERT INTO app.orders VALUES (-2, 2, 'loaded on both sides')")
    assert wait_for(lambda: _apply_errors(dst) > errors, timeout=120, interval=1)
    error = _last_error(dst)
    assert "Key (id)=(-2)" in error["detail"], error
    lsn = error["finish_lsn"]

    # check.yml fails and shows the error with the LSN to skip (and on 18 the conflict count)
    rc, out = check_playbook()
    assert rc != 0, out[-6000:]
    assert "Key (id)=(-2)" in out and f"skip_lsn={lsn}" in out, out[-6000:]
    if int(pg_version(dst)) >= 18:
        assert "insert_exists" in out, out[-6000:]

    args = {"login_db": "shop", "name": SUBSCRIPTION, "skip_lsn": lsn}
    checked = module(DST, "pg_subscription", args, check=True)
    assert checked["changed"] is True, checked
    assert checked["queries"] == [f"ALTER SUBSCRIPTION \"{SUBSCRIPTION}\" SKIP (lsn = '{lsn}')"]
    assert psql(dst, "shop", "SELECT subskiplsn FROM pg_subscription") == "0/0"  # check mode
    done = module(DST, "pg_subscription", args)
    assert done["changed"] is True, done
    # the skipped transaction done, the apply goes on: the same task changes nothing now
    assert wait_for(lambda: _last_error(dst)["resolved"] is True, timeout=120, interval=2)
    again = module(DST, "pg_subscription", args)
    assert again["changed"] is False, again
    _reset_error_counts(dst)
    assert_synced(src, dst, TABLES + (ADDED,))


def _stock_error(src):
    return psql(src, "shop", "SELECT coalesce(last_error, '') FROM tablesync.trigger_sets "
                             "WHERE name = 'stock'")


def test_trigger_target_error_stops_the_set_is_shown_and_retried(src, dst):
    """Issue 12 item 2 under the running writer: a constraint only the target has refuses a
    change the source accepted. That set's flush stops with the set, table and statement named,
    check.yml shows it, the queue keeps every change; once the target is fixed the next flush
    applies them all (nothing skipped) and the error is cleared."""
    psql(dst, "stock_copy", "ALTER TABLE app.stock ADD CONSTRAINT faults_only_on_target "
                            "CHECK (id <> -7) NOT VALID")
    try:
        psql(src, "shop", "INSERT INTO app.stock VALUES (-7, 7)")
        src.run(f"systemctl start {FLUSH}.service")
        assert wait_for(lambda: "faults_only_on_target" in _stock_error(src), timeout=60, interval=1)
        error = _stock_error(src)
        assert "stock" in error and "app.stock" in error, error
        queued = int(psql(src, "shop", "SELECT count(*) FROM tablesync.trigger_changes"))
        assert queued > 0
        rc, out = check_playbook()
        assert rc != 0, out[-6000:]
        assert "faults_only_on_target" in out, out[-6000:]
    finally:
        psql(dst, "stock_copy", "ALTER TABLE app.stock DROP CONSTRAINT faults_only_on_target")
    src.run(f"systemctl start {FLUSH}.service")
    assert wait_for(lambda: _stock_error(src) == "", timeout=60, interval=1)
    assert psql(dst, "stock_copy", "SELECT qty FROM app.stock WHERE id = -7") == "7"
    assert_synced(src, dst, TABLES + (ADDED,))


def test_check_playbook_healthy_after_all_faults(src, dst):
    """Every fault resolved and the error counts reset: the check is green again. (Without
    -e tablesync_check_verify=true: pg_table_compare needs a key, app.events has none; the
    tables were compared whole above.)"""
    pause(src)
    try:
        wait_synced(src, dst, TABLES + (ADDED,))
        rc, out = check_playbook()
    finally:
        resume(src)
    assert rc == 0, out[-6000:]
    assert "All 2 sync set targets are within the thresholds" in out, out[-6000:]
