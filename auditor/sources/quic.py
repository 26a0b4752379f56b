"""QUIC Initial packets -> the ClientHello's SNI (RFC 9000, RFC 9001 section 5; RFC 9369 for v2).

The client's Initial packets are protected with keys derived from the Destination Connection ID
the client chose, so anyone can remove that protection: derive the keys, remove header
protection, decrypt with AES-128-GCM, then reassemble the CRYPTO frames (which may arrive out of
order and across packets) into the ClientHello.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

V1, V2 = 0x00000001, 0x6B3343CF
_SALTS = {
    V1: bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a"),  # RFC 9001 section 5.2
    V2: bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9"),  # RFC 9369 section 3.3.1
}
_LABEL = {V1: "quic", V2: "quicv2"}
_INITIAL_TYPE = {V1: 0, V2: 1}
_NOT_PADDING = re.compile(b"[^\x00]").search
MAX_CRYPTO = 65_536
"""CRYPTO bytes kept per connection while the ClientHello is incomplete."""


class QuicError(Exception):
    """A datagram that claims to be a QUIC Initial but cannot be one."""


def _expand_label(secret: bytes, label: str, length: int) -> bytes:
    full = b"tls13 " + label.encode()
    info = struct.pack("!H", length) + bytes([len(full)]) + full + b"\x00"
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.new(secret, block + info + bytes([i]), hashlib.sha256).digest()
        out, i = out + block, i + 1
    return out[:length]


@functools.lru_cache(maxsize=4096)
def client_keys(dcid: bytes, version: int = V1) -> tuple[bytes, bytes, bytes]:
    """(key, iv, hp) protecting a client's Initial packets (cached: a connection's Initials share them)."""
    initial = hmac.new(_SALTS[version], dcid, hashlib.sha256).digest()
    client = _expand_label(initial, "client in", 32)
    prefix = _LABEL[version]
    return _expand_label(client, f"{prefix} key", 16), _expand_label(client, f"{prefix} iv", 12), _expand_label(client, f"{prefix} hp", 16)


def _varint(data: bytes, off: int) -> tuple[int, int]:
    if off >= len(data):
        raise QuicError("truncated variable-length integer")
    size = 1 << (data[off] >> 6)
    if off + size > len(data):
        raise QuicError("truncated variable-length integer")
    value = data[off] & 0x3F
    for b in data[off + 1 : off + size]:
        value = (value << 8) | b
    return value, off + size


def is_initial(datagram: bytes) -> bool:
    """True when a datagram starts with a QUIC v1/v2 Initial long header."""
    if len(datagram) < 7 or not datagram[0] & 0x80:
        return False
    version = int.from_bytes(datagram[1:5], "big")
    return version in _SALTS and (datagram[0] >> 4) & 0x03 == _INITIAL_TYPE[version]


def initial_crypto(datagram: bytes) -> tuple[bytes, list[tuple[int, bytes]]]:
    """(DCID, [(offset, data) of CRYPTO frames]) of every client Initial packet in a datagram."""
    found: list[tuple[int, bytes]] = []
    dcid_first = b""
    pos = 0
    while pos < len(datagram) and is_initial(datagram[pos:]):
        dcid, frames, pos = _one_initial(datagram, pos)
        dcid_first = dcid_first or dcid
        found += frames
    return dcid_first, found


def _one_initial(data: bytes, start: int) -> tuple[bytes, list[tuple[int, bytes]], int]:
    version = int.from_bytes(data[start + 1 : start + 5], "big")
    off = start + 5
    dcid_len = data[off]
    if dcid_len > 20:
        raise QuicError("connection id longer than 20 bytes")
    dcid = data[off + 1 : off + 1 + dcid_len]
    off += 1 + dcid_len
    if off >= len(data) or data[off] > 20:
        raise QuicError("truncated or oversized source connection id")
    off += 1 + data[off]
    token_len, off = _varint(data, off)
    off += token_len
    length, pn_offset = _varint(data, off)
    end = pn_offset + length
    if length < 20 or end > len(data):
        raise QuicError("Initial packet length beyond the datagram")
    key, iv, hp = client_keys(dcid, version)
    sample = data[pn_offset + 4 : pn_offset + 20]
    encryptor = Cipher(algorithms.AES(hp), modes.ECB()).encryptor()  # noqa: S305 - header protection is AES-ECB by definition (RFC 9001 5.4.3)
    mask = encryptor.update(sample) + encryptor.finalize()
    first = data[start] ^ (mask[0] & 0x0F)
    pn_len = (first & 0x03) + 1
    pn_bytes = bytes(b ^ m for b, m in zip(data[pn_offset : pn_offset + pn_len], mask[1 : 1 + pn_len], strict=True))
    header = bytes([first]) + data[start + 1 : pn_offset] + pn_bytes
    nonce = bytes(a ^ b for a, b in zip(iv, int.from_bytes(pn_bytes, "big").to_bytes(12, "big"), strict=True))
    try:
        plain = AESGCM(key).decrypt(nonce, data[pn_offset + pn_len : end], header)
    except InvalidTag:
        raise QuicError("Initial packet does not decrypt (not a client Initial)") from None
    return dcid, _crypto_frames(plain), end


def _crypto_frames(plain: bytes) -> list[tuple[int, bytes]]:
    frames, off = [], 0
    while off < len(plain):
        kind = plain[off]
        if kind == 0x00:  # PADDING, usually a long run of it
            match = _NOT_PADDING(plain, off)
            off = match.start() if match else len(plain)
        elif kind == 0x01:  # PING
            off += 1
        elif kind == 0x06:  # CRYPTO
            offset, off = _varint(plain, off + 1)
            length, off = _varint(plain, off)
            if off + length > len(plain):
                raise QuicError("CRYPTO frame longer than its packet")
            frames.append((offset, plain[off : off + length]))
            off += length
        elif kind in (0x02, 0x03):  # ACK
            _, off = _varint(plain, off + 1)  # largest acknowledged
            _, off = _varint(plain, off)  # ack delay
            count, off = _varint(plain, off)  # range count
            _, off = _varint(plain, off)  # first range
            for _ in range(count * 2):  # gap, range length
                _, off = _varint(plain, off)
            if kind == 0x03:
                for _ in range(3):
                    _, off = _varint(plain, off)
        elif kind == 0x1C:  # CONNECTION_CLOSE
            break
        else:
            break  # a frame type an Initial should not carry: stop reading
    return frames


class CryptoStream:
    """CRYPTO data of one connection, reassembled from frames in any order."""

    def __init__(self) -> None:
        self.pieces: dict[int, bytes] = {}
        self.held = 512
        """Bytes held (with a flow's bookkeeping), for the extractor's memory bound."""

    def add(self, frames: list[tuple[int, bytes]]) -> bytes:
        for offset, data in frames:
            if offset < MAX_CRYPTO and offset not in self.pieces:
                self.pieces[offset] = data
                self.held += len(data)
        out = b""
        for offset in sorted(self.pieces):
            if offset > len(out):
                break
            out += self.pieces[offset][len(out) - offset :]
        return out
