"""runtime/durable.py: the SQLite plumbing that the watcher's state, the serve store and the
webhook outbox share, on real SQLite files."""

from __future__ import annotations

import sqlite3

import pytest

from sumctl.runtime.durable import DurableDb
from sumctl.runtime.errors import StateError, SumctlError

# A child row must name a parent, checked at COMMIT (deferred): the one way to make a COMMIT
# itself fail on a healthy disk.
SCHEMA = """
CREATE TABLE IF NOT EXISTS parents (id INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS children (
    id INTEGER PRIMARY KEY,
    parent INTEGER REFERENCES parents (id) DEFERRABLE INITIALLY DEFERRED
);
"""


def _db(tmp_path, **kwargs) -> DurableDb:
    return DurableDb(tmp_path / "state.db", SCHEMA, 1, what="test state", fix="pass another one", **kwargs)


def test_a_failed_commit_is_rolled_back_so_the_next_write_can_begin(tmp_path):
    store = _db(tmp_path)
    store.query("PRAGMA foreign_keys=ON")  # outside a transaction, where SQLite takes it
    with pytest.raises(StateError, match=r"state\.db: cannot write the test state .*FOREIGN KEY"):
        with store.tx() as db:
            db.execute("INSERT INTO children (id, parent) VALUES (1, 99)")
    # Left open, the failed transaction would refuse every later BEGIN.
    with store.tx() as db:
        db.execute("INSERT INTO parents (id) VALUES (99)")
        db.execute("INSERT INTO children (id, parent) VALUES (1, 99)")
    assert store.query("SELECT id, parent FROM children") == [(1, 99)]
    store.close()


def test_an_error_inside_a_transaction_rolls_all_of_it_back(tmp_path):
    store = _db(tmp_path)
    with pytest.raises(RuntimeError):
        with store.tx() as db:
            db.execute("INSERT INTO parents (id) VALUES (1)")
            raise RuntimeError("stop")
    assert store.query("SELECT count(*) FROM parents") == [(0,)]
    store.close()


def test_group_commit_fsyncs_only_the_commits_that_ask(tmp_path):
    store = _db(tmp_path, group_commit=True)
    assert store.query("PRAGMA synchronous") == [(1,)]  # NORMAL
    with store.tx() as db:
        db.execute("INSERT INTO parents (id) VALUES (1)")
    assert store.unsynced
    with store.tx(durable=True) as db:
        assert db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL for this commit
    assert not store.unsynced
    store.close()
    every = DurableDb(tmp_path / "every.db", SCHEMA, 1, what="test state", fix="pass another one")
    assert every.query("PRAGMA synchronous") == [(2,)]
    with every.tx() as db:
        db.execute("INSERT INTO parents (id) VALUES (1)")
    assert not every.unsynced
    every.close()


def test_a_newer_schema_is_refused_and_an_older_one_migrated_once(tmp_path):
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE parents (id INTEGER PRIMARY KEY, old TEXT)")
        raw.execute("PRAGMA user_version=1")
    seen = []

    def migrate(db, found):
        seen.append(found)
        if found < 2:
            db.execute("ALTER TABLE parents RENAME COLUMN old TO new")

    DurableDb(path, SCHEMA, 2, what="test state", fix="pass another one", migrate=migrate).close()
    DurableDb(path, SCHEMA, 2, what="test state", fix="pass another one", migrate=migrate).close()
    assert seen == [1, 2]  # told what it finds; the second open finds it done
    with sqlite3.connect(path) as raw:
        assert [row[1] for row in raw.execute("PRAGMA table_info(parents)")] == ["id", "new"]
    with pytest.raises(SumctlError, match=r"state\.db: written by a newer sumctl \(test state schema 2\)"):
        DurableDb(path, SCHEMA, 1, what="test state", fix="pass another one")


def test_readonly_reads_as_it_is_and_never_writes(tmp_path):
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as raw:
        raw.execute("PRAGMA user_version=1")
    reader = DurableDb(path, SCHEMA, 2, what="test state", fix="pass another one", readonly=True)
    assert reader.query("PRAGMA user_version") == [(1,)]
    assert reader.query("SELECT name FROM sqlite_master") == []
    reader.close()
    assert reader.closed
    with pytest.raises(StateError, match="is closed"):
        reader.query("SELECT 1")
