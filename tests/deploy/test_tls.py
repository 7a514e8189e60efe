"""controller/tls.py: a certificate and key are checked before a server uses them, each mistake in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccfo.config.tls import TlsError, client_context, server_files
from tests.deploy.kit import make_ca, server_cert, write_private


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = server_cert(make_ca(), "127.0.0.1")
    (tmp_path / "s.crt").write_bytes(cert)
    return tmp_path / "s.crt", write_private(tmp_path / "s.key", key)


def test_a_good_pair_gives_uvicorns_arguments(pair: tuple[Path, Path]) -> None:
    cert, key = pair
    assert server_files(cert, key, "controller") == {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    assert server_files(None, None, "controller") == {}


def test_each_mistake_is_one_clear_line(pair: tuple[Path, Path], tmp_path: Path) -> None:
    cert, key = pair
    with pytest.raises(TlsError, match="controller: set both tls_cert_file and tls_key_file"):
        server_files(cert, None, "controller")
    with pytest.raises(TlsError, match=r"certificate .*missing.crt: file not found"):
        server_files(tmp_path / "missing.crt", key, "controller")
    key.chmod(0o644)
    with pytest.raises(TlsError, match=r"hosts.ipc-a.agent: private key .*s.key: readable or writable by others "
                                       r"\(mode 644\); run: chmod 600"):
        server_files(cert, key, "hosts.ipc-a.agent")
    key.chmod(0o600)
    _, other_key = server_cert(make_ca(), "127.0.0.1")
    write_private(tmp_path / "other.key", other_key)
    with pytest.raises(TlsError, match=r"cannot use certificate .*s\.crt with key .*other\.key"):
        server_files(cert, tmp_path / "other.key", "controller")
    _, locked = server_cert(make_ca(), "127.0.0.1", password=b"pass phrase")
    write_private(tmp_path / "locked.key", locked)
    with pytest.raises(TlsError, match="the private key is encrypted"):
        server_files(cert, tmp_path / "locked.key", "controller")
    with pytest.raises(TlsError, match=r"CA file .*nope\.crt"):
        client_context(tmp_path / "nope.crt")
