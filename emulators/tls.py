"""One local certificate authority for every emulator, so clients trust them explicitly (never verify=False).

The CA and a server certificate for 127.0.0.1/localhost are generated with `trustme` and written to a directory:
`ca.pem` is what SYNC_CA_BUNDLE points at; `server.pem` and `server-key.pem` are what the HTTPS servers load.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class TlsFiles:
    ca_file: Path
    cert_file: Path
    key_file: Path


def make_tls_files(directory: Path) -> TlsFiles:
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="Marketo-Dynamics sync local emulators")
    server = ca.issue_cert("127.0.0.1", "localhost", "::1")
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
    ca.cert_pem.write_to_path(str(files.ca_file))
    server.private_key_pem.write_to_path(str(files.key_file))
    with files.cert_file.open("wb") as out:
        for blob in server.cert_chain_pems:
            out.write(blob.bytes())
    files.key_file.chmod(0o600)
    return files
