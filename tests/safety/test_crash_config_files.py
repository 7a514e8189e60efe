"""Crash consistency of the database config repoint (agents/files): the writer is killed, or one of its system
calls fails, at every system-call boundary of a change; the file must then be the old bytes or the new
bytes, never anything else, every `*.bak` must hold the original whole, and the next run must finish the
change. Short writes (a disk that fills up mid-write) are simulated in process.

Kill and failure come from strace (see syscall_faults.py); the writer runs the real `ConfigFiles` code
in a child interpreter.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from agents.files import ConfigFiles, DbTarget, FileSpec, RepointError
from tests.safety import syscall_faults as sf

SITES = {"shenzhen": DbTarget("shenzhen", "10.30.0.10", 1521), "shanghai": DbTarget("shanghai", "10.40.0.10", 1522)}
# A realistic file: comments, CRLF, other keys, 20 kB of padding so the data is not one tiny write.
OLD = {
    "kcbp-db": ("; KCBP\r\n[general]\r\nhost = keep.me\r\n[database]\r\nHost = 10.30.0.10\r\nport=1521\r\n"
                + "; pad\r\n" * 2500).encode(),
    "cti-db": ("# CTI database\ndb.user=cti\ndb.host = 10.30.0.10\ndb.port=1521\n" + "#\n" * 100).encode(),
    "app-db": b"<datasource><url>jdbc:oracle:thin:@10.30.0.10:1521/FUND</url></datasource>\n",
}
NEW = {
    "kcbp-db": OLD["kcbp-db"].replace(b"Host = 10.30.0.10", b"Host = 10.40.0.10"),
    "cti-db": OLD["cti-db"].replace(b"db.host = 10.30.0.10", b"db.host = 10.40.0.10"),
    "app-db": OLD["app-db"].replace(b"@10.30.0.10:1521/", b"@10.40.0.10:1522/"),
}
NAMES = {"kcbp-db": "kcbp-db.ini", "cti-db": "db.properties", "app-db": "ds.xml"}

CHILD = '''
import os, sys
from pathlib import Path
from agents.files import ConfigFiles, DbTarget, FileSpec, RepointError
root, op = Path(sys.argv[1]), sys.argv[2]
sites = {"shenzhen": DbTarget("shenzhen", "10.30.0.10", 1521), "shanghai": DbTarget("shanghai", "10.40.0.10", 1522)}
etc = root / "etc"
specs = [FileSpec("kcbp-db", etc / "kcbp-db.ini", "ini", section="database", key="host"),
         FileSpec("cti-db", etc / "db.properties", "keyvalue", key="db.host"),
         FileSpec("app-db", etc / "ds.xml", "regex", pattern=r"@([^/<]+)/", value="{host}:{port}")]
files = ConfigFiles(specs, sites, root / "backups")
sys.stdout.write("ready\\n")
sys.stdout.flush()
sys.stdin.readline()
try:
    files.repoint_all("shanghai") if op == "all" else files.repoint(op, "shanghai")
    code = 0
except RepointError as exc:
    code = 3 if exc.restored else 4
except BaseException:
    code = 5
os._exit(code)
'''
SUCCESS, RESTORED, NOT_RESTORED = 0, 3, 4


def specs(root: Path) -> list[FileSpec]:
    etc = root / "etc"
    return [FileSpec("kcbp-db", etc / "kcbp-db.ini", "ini", section="database", key="host"),
            FileSpec("cti-db", etc / "db.properties", "keyvalue", key="db.host"),
            FileSpec("app-db", etc / "ds.xml", "regex", pattern=r"@([^/<]+)/", value="{host}:{port}")]


def site_dir(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    for fid, data in OLD.items():
        (root / "etc" / NAMES[fid]).write_bytes(data)
        os.chmod(root / "etc" / NAMES[fid], 0o640)
    return root


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for d in (root / "etc", root / "backups") if d.exists() for p in d.iterdir()
                  if p.name.endswith(".ccfo-tmp"))


def check_whole(root: Path, fid: str, where: str) -> bytes:
    """The file is old or new; every backup of it is the original, whole; a new file has a backup."""
    data = (root / "etc" / NAMES[fid]).read_bytes()
    assert data in (OLD[fid], NEW[fid]), f"{where}: {fid} is torn ({len(data)} bytes)"
    backups = sorted((root / "backups").glob(f"{fid}.*.bak")) if (root / "backups").exists() else []
    for bak in backups:
        assert bak.read_bytes() == OLD[fid], f"{where}: backup {bak.name} is not the original ({bak.stat().st_size} B)"
    if data == NEW[fid]:
        assert backups, f"{where}: {fid} was changed but has no usable backup"
    return data


def recover(root: Path, fids: list[str], where: str, failed_unlink: bool = False) -> None:
    """The next run (no fault) finishes the change and cleans what the crash left (a temp name whose own
    unlink failed stays until the next real change of that file: a run that changes nothing writes nothing)."""
    files = ConfigFiles(specs(root), SITES, root / "backups")
    for fid in fids:
        files.repoint(fid, "shanghai")
        assert (root / "etc" / NAMES[fid]).read_bytes() == NEW[fid], where
        check_whole(root, fid, f"{where}, after the next run")
        assert files.current(fid).site == "shanghai"
    if not failed_unlink:
        assert leftovers(root) == [], f"{where}: temp files left after the next run"
    assert oct((root / "etc" / NAMES[fids[0]]).stat().st_mode & 0o777) == oct(0o640), where  # mode kept


def sweep_one(tmp_path: Path, op: str, mode: str, calls: list[sf.Call]) -> list[str]:
    fids = list(OLD) if op == "all" else [op]

    def work(mode: str, call: sf.Call) -> str:
        root = site_dir(tmp_path / f"{mode}-{call.name}-{call.k}")
        action = "signal=KILL" if mode == "kill" else f"error={sf.errno_for(call.name)}"
        code = sf.run(CHILD, [str(root), op], inject=f"{call.name}:{action}:when={call.k}")
        where = f"{mode} at {call}"
        if mode == "kill":
            assert code == sf.KILLED, f"{where}: the writer was not killed (exit {code})"
        else:
            assert code in (SUCCESS, RESTORED, NOT_RESTORED), f"{where}: unexpected exception (exit {code})"
        states = {fid: check_whole(root, fid, where) for fid in fids}
        if code == SUCCESS:
            assert all(states[f] == NEW[f] for f in fids), f"{where}: reported done but a file is old"
        if code == RESTORED and op != "all":
            assert states[op] == OLD[op], f"{where}: reported restored but the file is new"
        if mode == "error" and call.name != "unlink":
            assert leftovers(root) == [], f"{where}: temp files left by a writer that went on"
        recover(root, fids, where, failed_unlink=mode == "error" and call.name == "unlink")
        return f"{call.name}#{call.k}:{code}"

    return [str(r) for r in sf.sweep(((mode, c) for c in calls), work)]


def calibrated(tmp_path: Path, op: str) -> list[sf.Call]:
    root = site_dir(tmp_path / "calibration")
    code, calls = sf.calibrate(CHILD, [str(root), op])
    assert code == SUCCESS
    names = [c.name for c in calls]
    for needed in ("write", "fsync", "rename", "link", "unlink"):
        assert needed in names, f"{needed} not seen in {names}"
    assert names.index("link") < names.index("rename"), "the backup must be in place before the file changes"
    return calls


@pytest.mark.parametrize("mode", ["kill", "error"])
def test_every_system_call_of_a_repoint(tmp_path: Path, mode: str) -> None:
    calls = calibrated(tmp_path, "kcbp-db")
    outcomes = sweep_one(tmp_path, "kcbp-db", mode, calls)
    assert len(outcomes) == len(calls) >= 20
    if mode == "error":  # a failure before the rename keeps the original, and says so
        assert any(o.endswith(f":{RESTORED}") for o in outcomes), outcomes


@pytest.mark.slow
def test_kill_at_every_system_call_of_repoint_all(tmp_path: Path) -> None:
    calls = calibrated(tmp_path, "all")
    assert len(sweep_one(tmp_path, "all", "kill", calls)) == len(calls) >= 60


# ----------------------------------------------------------------------------- in process: short writes


class _ShortWriter:
    """A file whose disk fills up: the first `keep` bytes land, then ENOSPC."""

    def __init__(self, real, keep: int) -> None:  # type: ignore[no-untyped-def]
        self._real, self._keep = real, keep

    def write(self, data: bytes) -> int:
        self._real.write(data[: self._keep])
        self._real.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._real, name)

    def __enter__(self) -> _ShortWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._real.close()


@pytest.mark.parametrize("which", [1, 2])  # the backup's write, then the new file's write
def test_short_write_leaves_the_original_and_no_torn_backup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            which: int) -> None:
    root = site_dir(tmp_path)
    real_fdopen, opened = os.fdopen, []

    def fdopen(fd: int, *args, **kwargs):  # type: ignore[no-untyped-def]
        f = real_fdopen(fd, *args, **kwargs)
        opened.append(f)
        return _ShortWriter(f, keep=1000) if len(opened) == which else f

    monkeypatch.setattr(os, "fdopen", fdopen)
    files = ConfigFiles(specs(root), SITES, root / "backups")
    with pytest.raises(RepointError, match="No space left") as err:
        files.repoint("kcbp-db", "shanghai")
    monkeypatch.undo()
    assert err.value.restored
    assert (root / "etc" / NAMES["kcbp-db"]).read_bytes() == OLD["kcbp-db"]
    check_whole(root, "kcbp-db", f"short write #{which}")
    assert leftovers(root) == []
    recover(root, ["kcbp-db"], f"short write #{which}")


def test_stale_temp_files_of_a_killed_writer_are_removed_by_the_next_change(tmp_path: Path) -> None:
    root = site_dir(tmp_path)
    (root / "backups").mkdir()
    stale = [root / "etc" / ".kcbp-db.ini.k1ll3d_x.ccfo-tmp", root / "backups" / ".kcbp-db.abcdefgh.ccfo-tmp"]
    keep = [root / "etc" / ".kcbp-db.ini.bak.abcdefgh.ccfo-tmp", root / "etc" / "kcbp-db.ini.abcdefgh.ccfo-tmp",
            root / "backups" / ".cti-db.abcdefgh.ccfo-tmp"]  # not this file's temps: left alone
    for p in stale + keep:
        p.write_bytes(b"torn")
    ConfigFiles(specs(root), SITES, root / "backups").repoint("kcbp-db", "shanghai")
    assert [p.exists() for p in stale] == [False, False] and all(p.exists() for p in keep)
