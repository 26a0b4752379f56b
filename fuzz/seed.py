"""Write the fuzzers' seed corpus into fuzz/corpus/ (logs/ and pcap/) from the test data.

Nothing of it is committed: run this before a fuzzer (`python fuzz/seed.py`, from the checkout,
with the test extra installed: the captures are built with the tests' own scapy builders).

- logs: every sample under tests/data/logs (its first 16 KiB), and its first 12 lines, each stored
  plain and gzip-compressed with the shipped read window and with a small one (the first byte of
  a fuzz_logs input picks both, the second the format; see fuzz_logs.py);
- pcap: captures of a ClientHello (whole and split in segments), a QUIC Initial, a DNS answer
  naming a connection, SOCKS5 and CONNECT tunnels, as pcap and pcapng, and the same frames as a
  run of raw frames for the extractor (see fuzz_pcap.py).
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LOGS = ROOT / "tests" / "data" / "logs"
CORPUS = ROOT / "fuzz" / "corpus"
SEED_BYTES = 16 << 10


def put(folder: Path, data: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)


def log_seeds(out: Path) -> int:
    n = 0
    for path in sorted(LOGS.iterdir()):
        if path.name == "README.md":
            continue
        data = path.read_bytes()
        head = b"".join(data.splitlines(keepends=True)[:12])
        for body in (data[:SEED_BYTES], head):
            for mode in (0, 1, 8, 16):  # plain / gzip, shipped window / small windows
                for pick in range(0, 26, 5):  # detected, and some formats forced (fuzz_logs.py)
                    put(out, bytes([mode, pick]) + body)
                    n += 1
    return n


def capture_seeds(out: Path) -> int:
    from scapy.layers.dns import DNS, DNSQR, DNSRR
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from scapy.utils import PcapNgWriter, PcapWriter

    from tests.sources.test_pcap import CLIENT, MAC_A, MAC_B, SERVER, client_hello, client_initial, tcp_session

    def eth(p):  # type: ignore[no-untyped-def]
        return Ether(src=MAC_A, dst=MAC_B) / p

    dns = IP(src="192.0.2.53", dst=CLIENT) / UDP(sport=53, dport=33000) / DNS(
        id=1, qr=1, qd=DNSQR(qname="api.openai.com"), an=DNSRR(rrname="api.openai.com", type="A", rdata=SERVER, ttl=60))
    sessions = [
        tcp_session(client_hello("api.openai.com", padding=64)),
        tcp_session(client_hello("api.anthropic.com")[:120], split=40, order=[1, 0, 2]),
        [dns] + tcp_session(client_hello(None), sport=50001),
        [IP(src=CLIENT, dst=SERVER) / UDP(sport=5000, dport=443) / Raw(client_initial([(0, b"\x01\x00\x00\x10" + b"a" * 16)], b"\x11" * 8, 1))],
        tcp_session(b"\x05\x01\x00\x05\x01\x00\x03\x0eapi.openai.com\x01\xbb", dport=1080, sport=40000),
        tcp_session(b"CONNECT api.openai.com:443 HTTP/1.1\r\nHost: api.openai.com\r\n\r\n", dport=3128, sport=40002),
    ]
    n = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, packets in enumerate(sessions):
            for ng in (False, True):
                path = Path(tmp) / f"s{i}.{'pcapng' if ng else 'pcap'}"
                writer = PcapNgWriter(str(path)) if ng else PcapWriter(str(path), sync=True)
                for k, p in enumerate(packets):
                    frame = eth(p)
                    frame.time = 1721638800.0 + k * 0.01
                    writer.write(frame)
                writer.close()
                put(out, b"\x00" + path.read_bytes())
                n += 1
            run = b"".join(len(f).to_bytes(2, "big") + f for f in (bytes(eth(p)) for p in packets))
            put(out, b"\x01\x00" + run)  # Ethernet (LINKTYPES[0] is 1)
            raw = b"".join(len(f).to_bytes(2, "big") + f for f in (bytes(p) for p in packets))
            put(out, b"\x01\x03" + raw)  # raw IP (LINKTYPES[3] is 12)
            n += 2
    return n


def main() -> None:
    for sub in ("logs", "pcap"):
        shutil.rmtree(CORPUS / sub, ignore_errors=True)
    logs = log_seeds(CORPUS / "logs")
    pcaps = capture_seeds(CORPUS / "pcap")
    print(f"{logs} log seeds in {CORPUS / 'logs'}, {pcaps} capture seeds in {CORPUS / 'pcap'}")


if __name__ == "__main__":
    main()
