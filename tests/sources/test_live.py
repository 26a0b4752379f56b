"""`region-auditor sniff`, for real: two network namespaces joined by a veth pair, a client in one
sending TLS (IPv4 and IPv6), DNS and junk to servers in the other, the sniffer capturing on the
client's interface in a subprocess. Needs root (namespaces, CAP_NET_RAW); nothing leaves the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from auditor.sqlstore import SqlStore

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None, reason="live capture needs root and iproute2 (network namespaces)"),
]

ROOT = Path(__file__).resolve().parents[2]
SUFFIX = f"{os.getpid() % 100000}"
NS_CLIENT, NS_SERVER = f"ra-c{SUFFIX}", f"ra-s{SUFFIX}"
IF_CLIENT, IF_SERVER = f"rac{SUFFIX}", f"ras{SUFFIX}"

CONFIG = """
[[site]]
name = "hk-office"
networks = ["10.20.0.0/16", "2001:db8:20::/48", "127.0.0.0/8", "::1/128"]
egress_ip = "43.198.12.34"

[[org]]
name = "acme-research"
networks = ["10.20.1.0/24", "2001:db8:20::/48", "127.0.0.0/8", "::1/128"]
"""

SERVERS = r"""
import socket, struct, threading

def sink(port, whole):
    s = socket.socket(socket.AF_INET6)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port)); s.listen(64)
    while True:
        c, _ = s.accept(); c.settimeout(2)
        try:
            while c.recv(65536) and whole:  # TLS: hang up after the ClientHello
                pass
        except OSError:
            pass
        c.close()

def dns():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 53))
    while True:
        q, peer = s.recvfrom(512)
        end = q.index(b"\x00", 12) + 5  # the question: name, type, class
        answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton("10.20.1.1")
        s.sendto(q[:2] + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + q[12:end] + answer, peer)

for port, whole in ((443, False), (5555, True)):
    threading.Thread(target=sink, args=(port, whole), daemon=True).start()
threading.Thread(target=dns, daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""

CLIENT = r"""
import socket, ssl, struct, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE

def hello(host, sni):
    s = socket.create_connection((host, 443), timeout=3)
    try:
        ctx.wrap_socket(s, server_hostname=sni)  # the server never answers: the ClientHello is what counts
    except (OSError, ssl.SSLError):
        pass
    s.close()

q = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); q.settimeout(3)
q.sendto(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03api\x06openai\x03com\x00\x00\x01\x00\x01", ("10.20.1.1", 53))
q.recvfrom(512)
hello("10.20.1.1", "api.openai.com")
hello("2001:db8:20::1", "api.openai.com")
hello("10.20.1.1", None)            # no SNI: named by the DNS answer above
hello("10.20.1.1", "www.example.com")  # not governed
junk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(300):
    junk.sendto(b"x" * 200, ("10.20.1.1", 9999))
bulk = socket.create_connection(("10.20.1.1", 5555), timeout=3)
bulk.sendall(b"\x16" * 2_000_000)    # 2 MB to a port not watched
bulk.close()
print("sent", flush=True)
"""


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


@pytest.fixture
def netns(tmp_path: Path) -> Iterator[Path]:
    for ns in (NS_CLIENT, NS_SERVER):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        sh("ip", "netns", "add", ns)
    try:
        sh("ip", "link", "add", IF_CLIENT, "netns", NS_CLIENT, "type", "veth", "peer", "name", IF_SERVER, "netns", NS_SERVER)
        for ns, iface, v4, v6 in (
            (NS_CLIENT, IF_CLIENT, "10.20.1.5/24", "2001:db8:20::5/64"),
            (NS_SERVER, IF_SERVER, "10.20.1.1/24", "2001:db8:20::1/64"),
        ):
            sh("ip", "-n", ns, "addr", "add", v4, "dev", iface)
            sh("ip", "-n", ns, "-6", "addr", "add", v6, "dev", iface, "nodad")
            sh("ip", "-n", ns, "link", "set", iface, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        (tmp_path / "servers.py").write_text(SERVERS)
        (tmp_path / "client.py").write_text(CLIENT)
        (tmp_path / "auditor.toml").write_text(CONFIG)
        servers = subprocess.Popen(
            ["ip", "netns", "exec", NS_SERVER, sys.executable, str(tmp_path / "servers.py")], stdout=subprocess.PIPE, text=True
        )
        assert servers.stdout is not None and servers.stdout.readline().strip() == "ready"
        try:
            yield tmp_path
        finally:
            servers.kill()
            servers.wait()
    finally:
        for ns in (NS_CLIENT, NS_SERVER):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def start_sniffer(tmp: Path, db: Path, interface: str = IF_CLIENT) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            NS_CLIENT,
            sys.executable,
            "-m",
            "auditor",
            "sniff",
            "--interface",
            interface,
            "--config",
            str(tmp / "auditor.toml"),
            "--db",
            str(db),
            "--json",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    first = proc.stderr.readline()
    assert first.startswith(f"listening on {interface}: TCP and UDP ports 80, 443, 1080, 3128, 8080"), first + proc.stderr.read()
    return proc


def send_traffic(tmp: Path) -> None:
    out = subprocess.run(["ip", "netns", "exec", NS_CLIENT, sys.executable, str(tmp / "client.py")], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "sent", out.stderr


def stored_calls(db: Path, timeout: float = 10.0, want: int = 0) -> dict[tuple[str, str, str], int]:
    """(org, egress, verdict) -> calls, as committed in the database; waits until `want` calls are there."""
    deadline = time.monotonic() + timeout
    while True:
        rows = SqlStore(str(db)).rows() if db.exists() else []
        calls = {}
        for r in rows:
            calls[(r.org, r.egress_ip, r.verdict)] = calls.get((r.org, r.egress_ip, r.verdict), 0) + r.calls
        if sum(calls.values()) >= want or time.monotonic() > deadline:
            return calls
        time.sleep(0.2)


def test_sniff_names_live_connections_and_stores_them_as_they_come(netns: Path) -> None:
    db = netns / "live.db"
    proc = start_sniffer(netns, db)
    try:
        send_traffic(netns)
        # Stored while the capture runs (committed batch by batch), before any stop.
        assert stored_calls(db, want=3) == {("acme-research", "43.198.12.34", "violation"): 3}
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err  # a stopped watcher exits 0, whatever it found
    rows = json.loads(out)
    assert [(r["org"], r["host"], r["egress_ip"], r["country"], r["verdict"], r["calls"], r["basis"]) for r in rows] == [
        ("acme-research", "api.openai.com", "43.198.12.34", "HK", "violation", 3, "cloud:aws:ap-east-1")
    ]
    assert "violation: acme-research -> api.openai.com from 43.198.12.34 (HK, cloud:aws:ap-east-1)" in err
    # The kernel filter: the 300 junk datagrams and the 2 MB upload to an unwatched port never
    # reached user space; only connection starts and the DNS answer did.
    summary = next(line for line in err.splitlines() if "packets past the filter" in line)
    past = int(summary.split(": ", 1)[1].split()[0])
    assert 8 <= past <= 40, summary  # the 300 junk datagrams alone would exceed it
    assert "4 connections named" in summary and os.stat(db).st_mode & 0o777 == 0o600


def test_a_killed_sniffer_keeps_what_it_stored(netns: Path) -> None:
    db = netns / "kill.db"
    proc = start_sniffer(netns, db)
    try:
        send_traffic(netns)
        assert stored_calls(db, want=3) == {("acme-research", "43.198.12.34", "violation"): 3}
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert stored_calls(db) == {("acme-research", "43.198.12.34", "violation"): 3}
    again = start_sniffer(netns, db)  # a new capture adds to the same database
    try:
        send_traffic(netns)
        assert stored_calls(db, want=6) == {("acme-research", "43.198.12.34", "violation"): 6}
    finally:
        again.send_signal(signal.SIGINT)
        again.communicate(timeout=20)
    assert again.returncode == 0


def test_sniff_without_cap_net_raw_or_interface_says_what_to_do(tmp_path: Path) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to drop CAP_NET_RAW")
    db = str(tmp_path / "x.db")
    dropped = subprocess.run(
        ["setpriv", "--inh-caps=-net_raw", "--bounding-set=-net_raw", sys.executable, "-m", "auditor", "sniff", "-i", "lo", "--db", db],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert dropped.returncode == 3
    assert "capturing on lo needs CAP_NET_RAW: run as root, or grant it" in dropped.stderr
    assert "Traceback" not in dropped.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "auditor", "sniff", "-i", "nosuchif0", "--db", db], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert missing.returncode == 3 and "nosuchif0: no such network interface; list them with `ip link`" in missing.stderr


LOOPBACK_CLIENT = r"""
import socket, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
for host in ("127.0.0.1", "::1"):
    s = socket.create_connection((host, 443), timeout=3)
    try:
        ctx.wrap_socket(s, server_hostname="api.openai.com")
    except (OSError, ssl.SSLError):
        pass
    s.close()
print("sent", flush=True)
"""


def test_sniff_on_loopback_counts_each_connection_once(netns: Path) -> None:
    """On lo every packet passes the tap twice (sent, then received): one call each, not two."""
    servers = subprocess.Popen(["ip", "netns", "exec", NS_CLIENT, sys.executable, str(netns / "servers.py")], stdout=subprocess.PIPE, text=True)
    try:
        assert servers.stdout is not None and servers.stdout.readline().strip() == "ready"
        db = netns / "lo.db"
        proc = start_sniffer(netns, db, "lo")
        try:
            (netns / "lo-client.py").write_text(LOOPBACK_CLIENT)
            out = subprocess.run(
                ["ip", "netns", "exec", NS_CLIENT, sys.executable, str(netns / "lo-client.py")], capture_output=True, text=True, timeout=60
            )
            assert out.stdout.strip() == "sent", out.stderr
            assert stored_calls(db, want=2) == {("acme-research", "43.198.12.34", "violation"): 2}
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0 and "2 connections named" in err, err
    finally:
        servers.kill()
        servers.wait()


def test_sniff_on_any_interface(netns: Path) -> None:
    """`--interface any`: every interface of the namespace, each connection named once."""
    db = netns / "any.db"
    proc = start_sniffer(netns, db, "any")
    try:
        send_traffic(netns)
        assert stored_calls(db, want=3) == {("acme-research", "43.198.12.34", "violation"): 3}
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0 and "4 connections named" in err, err
