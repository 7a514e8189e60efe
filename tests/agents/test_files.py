"""Repointing whitelisted database config files on real files in a temp directory: each format, the
backup, the refusal of a non-whitelisted path, a failing rename and a failed verification (original
bytes intact, no temp file left), and the second run that changes nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.files import (
    ConfigFiles,
    DbTarget,
    FileSpec,
    FormatError,
    NotWhitelisted,
    RepointError,
    UnknownSite,
    read_value,
    replace_value,
)

SITES = {"shenzhen": DbTarget("shenzhen", "10.30.0.10", 1521), "shanghai": DbTarget("shanghai", "10.40.0.10", 1522)}

INI = (
    "; KCBP database connection\r\n"
    "[general]\r\n"
    "host = keep.me.example\r\n"
    "\r\n"
    "[database]\r\n"
    "# the active site\r\n"
    "Host = 10.30.0.10   \r\n"
    "port=1521\r\n"
)
KEYVALUE = "# CTI database\ndb.user=cti\n#db.host=10.99.9.9\ndb.host = 10.30.0.10\ndb.port=1521\n"
REGEX = "<datasource>\n  <url>jdbc:oracle:thin:@10.30.0.10:1521/FUND</url>\n</datasource>\n"


def make(tmp_path: Path, clock: float | None = None, **kw: object) -> tuple[ConfigFiles, dict[str, Path]]:
    etc = tmp_path / "etc"
    etc.mkdir(exist_ok=True)
    paths = {"kcbp-db": etc / "kcbp-db.ini", "cti-db": etc / "db.properties", "app-db": etc / "ds.xml"}
    paths["kcbp-db"].write_bytes(INI.encode())
    paths["cti-db"].write_bytes(KEYVALUE.encode())
    paths["app-db"].write_bytes(REGEX.encode())
    specs = [
        FileSpec("kcbp-db", paths["kcbp-db"], "ini", section="database", key="host"),
        FileSpec("cti-db", paths["cti-db"], "keyvalue", key="db.host"),
        FileSpec("app-db", paths["app-db"], "regex", pattern=r"@([^/<]+)/", value="{host}:{port}"),
    ]
    extra = {"clock": (lambda: clock)} if clock is not None else {}
    return ConfigFiles(specs, SITES, tmp_path / "backups", **extra, **kw), paths  # type: ignore[arg-type]


def backups(tmp_path: Path) -> list[str]:
    d = tmp_path / "backups"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def temp_files(tmp_path: Path) -> list[Path]:
    return list((tmp_path / "etc").glob(".*ccfo-tmp"))


@pytest.mark.parametrize(("fid", "original", "old", "new"), [
    ("kcbp-db", INI, "Host = 10.30.0.10", "Host = 10.40.0.10"),
    ("cti-db", KEYVALUE, "db.host = 10.30.0.10", "db.host = 10.40.0.10"),
    ("app-db", REGEX, "@10.30.0.10:1521/", "@10.40.0.10:1522/"),
])
def test_each_format_changes_only_the_value(tmp_path: Path, fid: str, original: str, old: str, new: str) -> None:
    files, paths = make(tmp_path)
    assert files.current(fid).site == "shenzhen"
    result = files.repoint(fid, "shanghai")
    assert result.changed and result.backup is not None
    assert paths[fid].read_bytes() == original.replace(old, new).encode()  # every other byte kept
    assert Path(result.backup).read_bytes() == original.encode()
    assert Path(result.backup).name.startswith(f"{fid}.") and Path(result.backup).parent == tmp_path / "backups"
    assert files.current(fid).site == "shanghai"
    assert temp_files(tmp_path) == []


def test_repoint_all_and_site(tmp_path: Path) -> None:
    files, _ = make(tmp_path)
    assert files.site() == "shenzhen"
    results = files.repoint_all("shanghai")
    assert [r.id for r in results if r.changed] == ["kcbp-db", "cti-db", "app-db"]
    assert files.site() == "shanghai"
    assert {k: v.site for k, v in files.current_all().items()} == dict.fromkeys(files.files, "shanghai")


def test_second_run_is_a_no_op(tmp_path: Path) -> None:
    files, paths = make(tmp_path)
    files.repoint("cti-db", "shanghai")
    before, content = backups(tmp_path), paths["cti-db"].read_bytes()
    mtime = paths["cti-db"].stat().st_mtime_ns
    again = files.repoint("cti-db", "shanghai")
    assert not again.changed and again.backup is None
    assert backups(tmp_path) == before and len(before) == 1
    assert paths["cti-db"].read_bytes() == content and paths["cti-db"].stat().st_mtime_ns == mtime


def test_backups_are_never_overwritten(tmp_path: Path) -> None:
    files, _ = make(tmp_path, clock=1_700_000_000.0)  # same timestamp for every backup
    files.repoint("cti-db", "shanghai")
    files.repoint("cti-db", "shenzhen")
    files.repoint("cti-db", "shanghai")
    names = backups(tmp_path)
    assert names == ["cti-db.20231114T221320.000000Z.1.bak", "cti-db.20231114T221320.000000Z.2.bak",
                     "cti-db.20231114T221320.000000Z.bak"]
    assert (tmp_path / "backups" / names[2]).read_bytes() == KEYVALUE.encode()


def test_a_path_not_in_the_whitelist_is_refused(tmp_path: Path) -> None:
    files, _ = make(tmp_path)
    other = tmp_path / "etc" / "other.properties"
    other.write_text("db.host=10.30.0.10\n")
    for bad in (str(other), "/etc/passwd", str(tmp_path / "etc" / ".." / "etc" / "other.properties")):
        with pytest.raises(NotWhitelisted, match="not a whitelisted database config file"):
            files.repoint(bad, "shanghai")
    assert other.read_text() == "db.host=10.30.0.10\n" and backups(tmp_path) == []
    roundabout = str(tmp_path / "etc" / ".." / "etc" / "db.properties")  # the listed file, spelled differently
    assert files.repoint(roundabout, "shanghai").id == "cti-db"
    with pytest.raises(UnknownSite):
        files.repoint("cti-db", "beijing")


def test_a_failing_rename_leaves_the_original_intact(tmp_path: Path) -> None:
    def no_space(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    files, paths = make(tmp_path, replace=no_space)
    with pytest.raises(RepointError, match="No space left on device") as err:
        files.repoint("kcbp-db", "shanghai")
    assert err.value.restored
    assert paths["kcbp-db"].read_bytes() == INI.encode()
    assert temp_files(tmp_path) == []
    assert files.current("kcbp-db").site == "shenzhen"


def test_a_failed_verification_restores_the_backup(tmp_path: Path) -> None:
    renames: list[str] = []

    def lossy(src: str, dst: str) -> None:  # the first rename lands, then something else rewrites the file
        os.replace(src, dst)
        renames.append(dst)
        if len(renames) == 1:
            Path(dst).write_text("db.host=10.99.0.1\n")

    files, paths = make(tmp_path, replace=lossy)
    with pytest.raises(RepointError, match=r"verification failed.*original restored") as err:
        files.repoint("cti-db", "shanghai")
    assert err.value.restored
    assert paths["cti-db"].read_bytes() == KEYVALUE.encode()
    assert temp_files(tmp_path) == [] and len(backups(tmp_path)) == 1
    assert len(renames) == 2  # the write, then the restore


def test_repoint_all_puts_back_earlier_files_when_one_fails(tmp_path: Path) -> None:
    files, paths = make(tmp_path)
    paths["app-db"].write_text("no url here\n")
    with pytest.raises(RepointError, match="also put back: kcbp-db, cti-db"):
        files.repoint_all("shanghai")
    assert paths["kcbp-db"].read_bytes() == INI.encode()
    assert paths["cti-db"].read_bytes() == KEYVALUE.encode()


@pytest.mark.parametrize(("text", "message"), [
    ("db.user=cti\n", "found 0"),
    ("db.host=10.30.0.10\ndb.host=10.30.0.11\n", "found 2"),
])
def test_missing_or_repeated_setting_is_refused(tmp_path: Path, text: str, message: str) -> None:
    files, paths = make(tmp_path)
    paths["cti-db"].write_text(text)
    with pytest.raises(RepointError, match=message):
        files.repoint("cti-db", "shanghai")
    assert paths["cti-db"].read_text() == text and backups(tmp_path) == []
    assert files.current("cti-db").site is None and "found" in (files.current("cti-db").error or "")


def test_unreadable_file_shows_in_current(tmp_path: Path) -> None:
    files, paths = make(tmp_path)
    paths["kcbp-db"].unlink()
    value = files.current("kcbp-db")
    assert value.site is None and value.value is None and value.error
    assert files.site() is None


def test_bytes_outside_utf8_survive(tmp_path: Path) -> None:
    files, paths = make(tmp_path)
    raw = b"# caf\xe9 latin-1 comment\ndb.host=10.30.0.10\n"
    paths["cti-db"].write_bytes(raw)
    files.repoint("cti-db", "shanghai")
    assert paths["cti-db"].read_bytes() == raw.replace(b"10.30.0.10", b"10.40.0.10")


def test_formats_refuse_a_multiline_value() -> None:
    spec = FileSpec("x", Path("x"), "keyvalue", key="k")
    with pytest.raises(FormatError):
        replace_value("k=v\n", spec, "a\nk=b")


_line = st.text(alphabet=st.characters(blacklist_characters="\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"), max_size=30)


@settings(max_examples=150, deadline=None)
@given(before=st.lists(_line, max_size=5), after=st.lists(_line, max_size=5),
       value=st.from_regex(r"[A-Za-z0-9.:-]{1,20}", fullmatch=True))
def test_keyvalue_replacement_keeps_every_other_line(before: list[str], after: list[str], value: str) -> None:
    spec = FileSpec("x", Path("x"), "keyvalue", key="db.host")
    others = [line for line in before + after
              if "db.host=old" not in line and not (line.partition("=")[0].strip() == "db.host" and "=" in line)]
    head, tail = others[:len(before)], others[len(before):]
    text = "\n".join([*head, "db.host=old", *tail]) + "\n"
    new = replace_value(text, spec, value)
    assert read_value(new, spec) == value
    assert new == text.replace("db.host=old", f"db.host={value}", 1)
