"""The webhook's own serving certificate leaves no key on disk, and a mounted one is used in place."""

from __future__ import annotations

import os
import ssl
import stat
import tempfile
from pathlib import Path

import pytest
from cryptography import x509

from vlm_operator import webhook_certs


def test_made_certificate_lives_in_memory_files_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    files = webhook_certs.serving_files("127.0.0.1")
    for path in (files.certfile, files.keyfile, files.cafile):
        assert path.startswith("/proc/self/fd/"), path
        target = os.readlink(path)
        assert target.startswith("/memfd:vlm-webhook-"), target  # anonymous memory, not a file on a filesystem
    assert list(tmp_path.iterdir()) == []
    assert b"PRIVATE KEY" in Path(files.keyfile).read_bytes()
    # kopf loads them exactly like this, and re-reads them to notice a renewed certificate
    ctx = ssl.create_default_context(purpose=ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(files.certfile, files.keyfile)
    assert Path(files.certfile).read_bytes() == Path(files.certfile).read_bytes()
    leaf = x509.load_pem_x509_certificate(Path(files.certfile).read_bytes())
    ca = x509.load_pem_x509_certificate(Path(files.cafile).read_bytes())
    leaf.verify_directly_issued_by(ca)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}


def test_mounted_certificate_is_used_in_place(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    webhook_certs.generate(tmp_path / "mounted", "vlm-operator.vlm-operator.svc")
    files = webhook_certs.serving_files("ignored", mounted=str(tmp_path / "mounted"))
    assert files.keyfile == str(tmp_path / "mounted" / "tls.key")
    assert stat.S_IMODE((tmp_path / "mounted").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "mounted" / "tls.key").stat().st_mode) == 0o600


def test_without_memfd_a_private_folder_is_used_and_removed_at_exit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delattr(os, "memfd_create")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    registered: list[tuple[object, tuple[object, ...]]] = []
    monkeypatch.setattr(webhook_certs.atexit, "register", lambda fn, *a, **_: registered.append((fn, a)))
    files = webhook_certs.serving_files("127.0.0.1")
    folder = Path(files.keyfile).parent
    assert folder.parent == tmp_path and folder.name.startswith("vlm-webhook-")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(Path(files.keyfile).stat().st_mode) == 0o600
    assert registered and registered[0][1] == (folder,)
    fn = registered[0][0]
    assert callable(fn)
    fn(folder)
    assert not folder.exists()


def test_advertised_url_replaces_scheme_host_and_port_only() -> None:
    from vlm_operator import webhook_server

    got = webhook_server.advertised_url("https://127.0.0.1:9443/validate?x=1", "https://127.0.0.1:40000")
    assert got == "https://127.0.0.1:40000/validate?x=1"
    with pytest.raises(ValueError, match=webhook_server.URL_ENV):
        webhook_server.advertised_url("https://127.0.0.1:9443/validate", "http://lb:80")
