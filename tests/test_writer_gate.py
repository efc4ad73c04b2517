"""SQLite write transactions queue behind a gate (storage/writer_gate.py) instead of SQLite's
busy handler: every concurrent writer commits, from threads and from processes, and the gate is
given back however a transaction ends."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from opencampaign.storage.engines import create_engine
from opencampaign.storage.writer_gate import HELD

WRITER = textwrap.dedent("""
    import sys, time
    import sqlalchemy as sa
    from opencampaign.storage.engines import create_engine
    engine = create_engine(sys.argv[1])
    for i in range(int(sys.argv[3])):
        with engine.connect().execution_options(write=True) as conn, conn.begin():
            n = conn.exec_driver_sql("SELECT count(*) FROM t").scalar()
            time.sleep(0.001)  # a read-modify-write that would interleave without the lock
            conn.exec_driver_sql("INSERT INTO t (writer, seen) VALUES (?, ?)", (sys.argv[2], n))
""")


def _engine(tmp_path: Path) -> sa.Engine:
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with engine.connect().execution_options(write=True) as conn, conn.begin():
        conn.exec_driver_sql("CREATE TABLE t (writer TEXT, seen INTEGER)")
    return engine


def _seen(engine: sa.Engine) -> list[int]:
    with engine.connect() as conn:
        return [row[0] for row in conn.exec_driver_sql("SELECT seen FROM t ORDER BY rowid")]


def test_writers_in_threads_and_processes_all_commit_one_at_a_time(tmp_path: Path):
    engine = _engine(tmp_path)
    url = str(engine.url)
    children = [subprocess.Popen([sys.executable, "-c", WRITER, url, f"p{i}", "40"]) for i in range(2)]
    errors: list[BaseException] = []

    def thread_writer(name: str) -> None:
        try:
            for _ in range(40):
                with engine.connect().execution_options(write=True) as conn, conn.begin():
                    n = conn.exec_driver_sql("SELECT count(*) FROM t").scalar()
                    time.sleep(0.001)
                    conn.exec_driver_sql("INSERT INTO t (writer, seen) VALUES (?, ?)", (name, n))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=thread_writer, args=(f"t{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert all(child.wait(120) == 0 for child in children)
    assert not errors, errors
    # Each writer saw every row committed before it: the transactions ran one after the other.
    assert _seen(engine) == list(range(6 * 40))
    assert (tmp_path / "db.sqlite.writer").exists()


def test_the_gate_is_given_back_after_a_rollback_and_after_a_failed_statement(tmp_path: Path):
    engine = _engine(tmp_path)
    with pytest.raises(RuntimeError), engine.connect().execution_options(write=True) as conn, conn.begin():
        conn.exec_driver_sql("INSERT INTO t VALUES ('a', 0)")
        raise RuntimeError("the caller failed")
    with pytest.raises(sa.exc.OperationalError), engine.connect().execution_options(write=True) as conn, \
            conn.begin():
        conn.exec_driver_sql("INSERT INTO missing_table VALUES (1)")
    done = threading.Event()

    def write_from_another_thread() -> None:
        with engine.connect().execution_options(write=True) as conn, conn.begin():
            conn.exec_driver_sql("INSERT INTO t VALUES ('b', 0)")
        done.set()

    threading.Thread(target=write_from_another_thread, daemon=True).start()
    assert done.wait(10), "the gate was not given back"
    assert _seen(engine) == [0]
    assert not HELD._by_connection  # noqa: SLF001


def test_an_invalidated_connection_gives_the_gate_back(tmp_path: Path):
    engine = _engine(tmp_path)
    conn = engine.connect().execution_options(write=True)
    conn.begin()
    conn.exec_driver_sql("INSERT INTO t VALUES ('a', 0)")
    conn.invalidate()  # e.g. after a lost connection: no rollback is run
    conn.close()
    done = threading.Event()

    def write_from_another_thread() -> None:
        with engine.connect().execution_options(write=True) as other, other.begin():
            other.exec_driver_sql("INSERT INTO t VALUES ('b', 1)")
        done.set()

    threading.Thread(target=write_from_another_thread, daemon=True).start()
    assert done.wait(10), "the gate was not given back"
    assert _seen(engine) == [1]


def test_reads_do_not_take_the_gate(tmp_path: Path):
    engine = _engine(tmp_path)
    with engine.connect().execution_options(write=True) as writer, writer.begin():
        writer.exec_driver_sql("INSERT INTO t VALUES ('a', 0)")
        with engine.connect() as reader:  # would wait forever if reads queued behind the writer
            assert reader.exec_driver_sql("SELECT count(*) FROM t").scalar() == 0
