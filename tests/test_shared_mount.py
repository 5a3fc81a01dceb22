"""A store on a shared mount, used by two clients at once: two sshfs mounts of one folder.

The set-up is real: an OpenSSH server on loopback with a throwaway key, and two FUSE sshfs
mounts of the same exported folder, so each client has its own kernel cache and its own
SFTP connection, as two hosts on a network file system have. `make test` installs
openssh-server and sshfs (Debian packages); where FUSE or those programs are missing the
tests are skipped, saying which.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import run_cli

SSHD = "/usr/sbin/sshd"


def _missing() -> str | None:
    if not Path("/dev/fuse").exists():
        return "no /dev/fuse on this machine (FUSE is unavailable)"
    for program in (SSHD, "sshfs", "ssh-keygen", "fusermount"):
        if shutil.which(program) is None:
            return f"{program} is not installed (make test installs openssh-server and sshfs)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def two_mounts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """Two sshfs mounts of one exported folder, through an sshd on a loopback port."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("sshfs")
    export, m1, m2 = root / "export", root / "m1", root / "m2"
    for d in (export, m1, m2):
        d.mkdir()
    for key in ("client", "host"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / key)],
                       check=True)
    port = _free_port()
    config = root / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root / 'host'}\n"
        f"AuthorizedKeysFile {root / 'client.pub'}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
        f"StrictModes no\nUsePAM no\nSubsystem sftp internal-sftp\nPidFile {root / 'pid'}\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    sshd = subprocess.Popen([SSHD, "-D", "-f", str(config), "-E", str(root / "sshd.log")])
    mounted: list[Path] = []
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline or sshd.poll() is not None:
                pytest.skip(f"sshd did not start: {(root / 'sshd.log').read_text()[-500:]}")
            time.sleep(0.05)
        user = os.environ.get("USER") or "root"
        for mount in (m1, m2):
            done = subprocess.run(
                ["sshfs", "-p", str(port), "-o",
                 f"IdentityFile={root / 'client'},StrictHostKeyChecking=no,"
                 "UserKnownHostsFile=/dev/null,LogLevel=ERROR",
                 f"{user}@127.0.0.1:{export}", str(mount)],
                capture_output=True, text=True, timeout=30)
            if done.returncode != 0:
                pytest.skip(f"sshfs could not mount: {done.stderr.strip()}")
            mounted.append(mount)
        yield m1, m2
    finally:
        for mount in mounted:
            subprocess.run(["fusermount", "-u", "-z", str(mount)], check=False)
        sshd.terminate()
        sshd.wait(timeout=10)


def _spawn(args: list[str], store: Path, actor: str = "ci@example.com") -> subprocess.Popen[str]:
    env = {**os.environ, "MODELREG_ACTOR": actor, "MODELREG_DIR": str(store)}
    return subprocess.Popen([sys.executable, "-m", "modelreg", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_two_clients_register_and_promote_on_one_store(two_mounts: tuple[Path, Path],
                                                       tmp_path: Path) -> None:
    m1, m2 = two_mounts
    project = "proj-" + os.urandom(4).hex()
    init = run_cli("init", m1 / project)
    assert init.returncode == 0, init.stderr
    stores = [m1 / project, m2 / project]

    # 12 parallel registers, six from each client.
    procs = []
    for i in range(12):
        f = tmp_path / f"model-{i}.bin"
        f.write_bytes(os.urandom(64) + bytes([i]))
        procs.append(_spawn(["register", "shared", str(f), "--no-git", "--json"],
                            stores[i % 2]))
    versions = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
        versions.append(json.loads(out)["version"])
    assert sorted(versions) == list(range(1, 13))

    # 8 racing promotions into production, four from each client: one holder at the end.
    for v in range(1, 9):
        staged = run_cli("promote", f"shared@{v}", "--to", "staging", registry=stores[v % 2])
        assert staged.returncode == 0, staged.stderr
    procs = [_spawn(["promote", f"shared@{v}", "--to", "production"], stores[v % 2])
             for v in range(1, 9)]
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
    for store in stores:
        rows = json.loads(run_cli("versions", "shared", "--json",
                                  registry=store).stdout)["versions"]
        assert [r["version"] for r in rows] == list(range(1, 13))
        assert sum(r["stage"] == "production" for r in rows) == 1
        fsck = run_cli("fsck", "--json", registry=store)
        assert fsck.returncode == 0, fsck.stdout + fsck.stderr
        assert json.loads(fsck.stdout)["ok"] is True
