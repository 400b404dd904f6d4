"""The harness itself: both clusters run, accept password logins and have logical WAL."""
from runner import run_tasks


def test_clusters_are_logical_and_separate(publisher, subscriber):
    assert publisher.port != subscriber.port
    for c in (publisher, subscriber):
        assert c.query('SHOW wal_level') == [('logical',)]


def test_ansible_playbook_runs_against_collection_path():
    run = run_tasks([{'name': 'ping', 'ansible.builtin.ping': {}}])
    assert run.rc == 0, run.output
    assert run.results[0]['ping'] == 'pong'
