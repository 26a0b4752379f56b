#!/usr/bin/env python3
"""Build region-auditor's embedded GeoIP country database.

Run at release time (never at install time):

    python tools/build-geoip-db.py --out geoip/data/

Source: the IPFire Location database (https://location.ipfire.org/,
CC BY-SA 4.0) as shipped in text form by Debian's ``tor-geoipdb`` package
(``/usr/share/tor/geoip`` and ``/usr/share/tor/geoip6``).

Output (in --out):
  * ``ipfire-country.mmdb.xz`` -- a MaxMind DB (MMDB v2.0, ip_version 6) with
    the MaxMind country record layout ``{"country": {"iso_code": "HK"}}``,
    xz-compressed.  IPv4 data lives in the IPv4-compatible ``::/96`` subtree
    (as in MaxMind's own databases), and ``::ffff:0:0/96`` (IPv4-mapped) and
    ``2002::/16`` (6to4) are aliased to that subtree.
  * ``NOTICE`` -- provenance, licence and attribution text (CC BY-SA 4.0
    requires it to travel with the data).

Requirements:
  * Python >= 3.9, standard library only.  No pip packages are needed: the
    MMDB writer is built in (the PyPI ``mmdb-writer`` package was evaluated
    but cannot set ``build_epoch``, which we want to be the data date for a
    reproducible build, nor create the IPv4 alias subtrees).
  * ``dpkg-deb`` (Debian/Ubuntu ``dpkg``) unless --geoip/--geoip6 are given;
    ``apt-get`` (with a current ``apt-get update``) unless --deb is given.
  * Optional, for ``--self-check``: ``pip install maxminddb``.

Input choices (mutually exclusive):
  (default)                    ``apt-get download tor-geoipdb`` into a temp dir
  --deb PATH                   use an already downloaded tor-geoipdb .deb
  --geoip FILE --geoip6 FILE   use already extracted text files
                               (then pass --source-version for the NOTICE)

Records whose country code is not a current ISO 3166-1 alpha-2 code
(``??``, ``A1``/``A2``/``A3``, ``AP``, ``EU``, ``XD``, ``ZZ``, withdrawn codes
such as ``AN``/``CS``/``SU``, ``UK``, ``UN``, ...) are left out, so those
addresses are "not found" instead of resolving to a fake country.

The build is deterministic: the same input gives a byte-identical output
(build_epoch is the data's "Generated:" date, not the time of the build).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import email.utils
import gzip
import ipaddress
import lzma
import os
import random
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path

PACKAGE = "tor-geoipdb"
GEOIP_PATH = "usr/share/tor/geoip"
GEOIP6_PATH = "usr/share/tor/geoip6"
CHANGELOG_PATH = "usr/share/doc/tor-geoipdb/changelog.Debian.gz"
OUT_NAME = "ipfire-country.mmdb.xz"
DATABASE_TYPE = "IPFire-Location-Country"

# Current ISO 3166-1 alpha-2 codes (249; identical to Debian iso-codes 4.15
# /usr/share/iso-codes/json/iso_3166-1.json).  Deliberately NOT included:
# exceptionally reserved codes (UK, EU, UN, SU, AC, ...), transitionally
# reserved/withdrawn codes (AN, CS, YU, ...), user-assigned codes (XK, ZZ, ...)
# and registry pseudo codes (AP, A1, A2, A3, XD, ??).
ISO3166_ALPHA2 = frozenset("""
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL
BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV
CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD
GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM
IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK
LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW
MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR
PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS
ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY
UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
""".split())
assert len(ISO3166_ALPHA2) == 249

# Regions of the 128-bit space that the IPv4 data and its aliases occupy.
V4COMPAT = (0, 96)                      # ::/96        (IPv4 data itself)
V4MAPPED = (0xFFFF << 32, 96)           # ::ffff:0:0/96 (alias)
SIXTOFOUR = (0x2002 << 112, 16)         # 2002::/16    (alias)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Obtaining the source
# --------------------------------------------------------------------------

def download_deb(workdir: Path) -> Path:
    log(f"apt-get download {PACKAGE} ...")
    # _apt cannot write into a 0700 mkdtemp dir; that only causes a warning.
    proc = subprocess.run(["apt-get", "download", PACKAGE], cwd=workdir,
                          capture_output=True, text=True)
    debs = sorted(workdir.glob(f"{PACKAGE}_*.deb"))
    if proc.returncode != 0 or not debs:
        sys.exit(f"apt-get download {PACKAGE} failed (try 'apt-get update' "
                 f"first, or pass --deb):\n{proc.stderr}")
    return debs[-1]


def extract_deb(deb: Path, workdir: Path) -> tuple[Path, Path, str, Path]:
    version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"],
                             check=True, capture_output=True,
                             text=True).stdout.strip()
    dest = workdir / "root"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], check=True)
    return dest / GEOIP_PATH, dest / GEOIP6_PATH, version, dest / CHANGELOG_PATH


def changelog_date(path: Path) -> _dt.datetime | None:
    """Date of the top entry of a Debian changelog (.gz)."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                m = re.match(r"^ -- .+?  (.+)$", line.rstrip("\n"))
                if m:
                    return email.utils.parsedate_to_datetime(m.group(1))
    except OSError:
        pass
    return None


# --------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------

class Source:
    def __init__(self, path: Path, family: int, aliases: bool = True):
        self.path = path
        self.family = family
        self.aliases = aliases
        self.header: list[str] = []          # comment lines, '#' stripped
        self.generated: _dt.datetime | None = None
        self.ranges: list[tuple[int, int, str]] = []   # kept, merged
        self.total = 0
        self.dropped: Counter[str] = Counter()          # code -> ranges
        self.dropped_addrs: Counter[str] = Counter()   # code -> addresses
        self.dropped_ranges: list[tuple[int, int, str]] = []
        self.kept_codes: Counter[str] = Counter()
        self.alias_conflicts: list[tuple[int, int, str]] = []

    def parse(self) -> None:
        conv = int if self.family == 4 else (
            lambda s: int(ipaddress.IPv6Address(s)))
        top = (1 << (32 if self.family == 4 else 128)) - 1
        prev_hi = -1
        ranges: list[tuple[int, int, str]] = []
        with open(self.path, encoding="ascii") as f:
            for lineno, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                if line.startswith("#"):
                    self.header.append(line[1:].strip())
                    m = re.match(r"#\s*Generated:\s*(.+)$", line)
                    if m:
                        self.generated = email.utils.parsedate_to_datetime(
                            m.group(1))
                    continue
                try:
                    lo_s, hi_s, cc = line.split(",")
                    lo, hi = conv(lo_s), conv(hi_s)
                except ValueError:
                    sys.exit(f"{self.path}:{lineno}: cannot parse {line!r}")
                if not 0 <= lo <= hi <= top:
                    sys.exit(f"{self.path}:{lineno}: bad range {line!r}")
                if lo <= prev_hi:
                    sys.exit(f"{self.path}:{lineno}: unsorted/overlapping "
                             f"range {line!r}")
                prev_hi = hi
                self.total += 1
                cc = cc.strip().upper()
                if cc not in ISO3166_ALPHA2:
                    self.dropped[cc] += 1
                    self.dropped_addrs[cc] += hi - lo + 1
                    self.dropped_ranges.append((lo, hi, cc))
                    continue
                if self.family == 6 and _overlaps_v4_space(lo, hi,
                                                           self.aliases):
                    # The IPv4 subtree and its aliases take precedence.
                    self.alias_conflicts.append((lo, hi, cc))
                    continue
                self.kept_codes[cc] += 1
                if ranges and ranges[-1][1] + 1 == lo and ranges[-1][2] == cc:
                    ranges[-1] = (ranges[-1][0], hi, cc)    # merge adjacent
                else:
                    ranges.append((lo, hi, cc))
        self.ranges = ranges


def _net_bounds(net: tuple[int, int]) -> tuple[int, int]:
    value, plen = net
    return value, value | ((1 << (128 - plen)) - 1)


def _overlaps_v4_space(lo: int, hi: int, aliases: bool) -> bool:
    for net in (V4COMPAT, V4MAPPED, SIXTOFOUR) if aliases else (V4COMPAT,):
        a, b = _net_bounds(net)
        if lo <= b and a <= hi:
            return True
    return False


def range_to_cidrs(lo: int, hi: int, bits: int):
    """Minimal list of (network, prefixlen) covering lo..hi inclusive."""
    while lo <= hi:
        align = (lo & -lo).bit_length() - 1 if lo else bits
        fit = (hi - lo + 1).bit_length() - 1
        size = min(align, fit)
        yield lo, bits - size
        lo += 1 << size


# --------------------------------------------------------------------------
# MMDB writer (MaxMind DB format 2.0)
# --------------------------------------------------------------------------

class U:
    """Explicitly typed unsigned integer for the MMDB encoder."""
    TYPES = {16: 5, 32: 6, 64: 9, 128: 10}

    def __init__(self, bits: int, value: int):
        self.type = self.TYPES[bits]
        self.value = value


def _control(type_id: int, size: int) -> bytes:
    if type_id <= 7:
        first, ext = type_id << 5, b""
    else:
        first, ext = 0, bytes([type_id - 7])
    if size < 29:
        return bytes([first | size]) + ext
    if size < 29 + 256:
        return bytes([first | 29]) + ext + bytes([size - 29])
    if size < 285 + 65536:
        return bytes([first | 30]) + ext + (size - 285).to_bytes(2, "big")
    return bytes([first | 31]) + ext + (size - 65821).to_bytes(3, "big")


def mmdb_encode(value) -> bytes:
    if isinstance(value, str):
        raw = value.encode("utf-8")
        return _control(2, len(raw)) + raw
    if isinstance(value, U):
        raw = value.value.to_bytes((value.value.bit_length() + 7) // 8, "big")
        return _control(value.type, len(raw)) + raw
    if isinstance(value, dict):
        out = [_control(7, len(value))]
        for k, v in value.items():
            out.append(mmdb_encode(k))
            out.append(mmdb_encode(v))
        return b"".join(out)
    if isinstance(value, list):
        return _control(11, len(value)) + b"".join(mmdb_encode(v)
                                                   for v in value)
    raise TypeError(f"unsupported MMDB value {value!r}")


METADATA_MARKER = b"\xab\xcd\xefMaxMind.com"
EMPTY = -1          # child slot values: >= 0 node index, EMPTY, or a leaf:
                    # -2 - k for data record k


class Tree:
    """Binary trie over the 128-bit address space."""

    def __init__(self):
        self.left = [EMPTY]
        self.right = [EMPTY]

    def _new(self) -> int:
        self.left.append(EMPTY)
        self.right.append(EMPTY)
        return len(self.left) - 1

    def _walk(self, value: int, depth: int) -> int:
        """Node reached after `depth` bits of `value`, creating nodes."""
        node = 0
        left, right = self.left, self.right
        for i in range(depth):
            side = right if (value >> (127 - i)) & 1 else left
            child = side[node]
            if child == EMPTY:
                child = self._new()
                side[node] = child
            elif child < EMPTY:
                raise ValueError(f"network {value:#x}/{depth} lies inside "
                                 f"an existing record")
            node = child
        return node

    def set(self, value: int, plen: int, target: int) -> None:
        """Point the slot for value/plen at `target` (leaf or node)."""
        parent = self._walk(value, plen - 1)
        side = self.right if (value >> (128 - plen)) & 1 else self.left
        if side[parent] != EMPTY:
            raise ValueError(f"network {value:#x}/{plen} already set")
        side[parent] = target

    def node_count(self) -> int:
        return len(self.left)


def build_mmdb(v4: list[tuple[int, int, str]], v6: list[tuple[int, int, str]],
               metadata: dict, aliases: bool) -> tuple[bytes, dict]:
    codes = sorted({cc for _, _, cc in v4} | {cc for _, _, cc in v6})
    data = bytearray()
    offsets = {}
    for cc in codes:
        offsets[cc] = len(data)
        data += mmdb_encode({"country": {"iso_code": cc}})
    leaf = {cc: -2 - i for i, cc in enumerate(codes)}
    leaf_cc = {-2 - i: cc for i, cc in enumerate(codes)}

    tree = Tree()
    stats = Counter()
    for lo, hi, cc in v6:
        for net, plen in range_to_cidrs(lo, hi, 128):
            tree.set(net, plen, leaf[cc])
            stats["v6_networks"] += 1
    for lo, hi, cc in v4:
        for net, plen in range_to_cidrs(lo, hi, 32):
            tree.set(net, plen + 96, leaf[cc])       # ::a.b.c.d/(96+plen)
            stats["v4_networks"] += 1
    v4root = tree._walk(V4COMPAT[0], V4COMPAT[1])
    if aliases:
        tree.set(*V4MAPPED, v4root)
        tree.set(*SIXTOFOUR, v4root)

    n = tree.node_count()
    max_value = n + 16 + len(data)
    record_size = next(rs for rs in (24, 28, 32) if max_value < (1 << rs))

    def rec(v: int) -> int:
        if v >= 0:
            return v
        if v == EMPTY:
            return n
        return n + 16 + offsets[leaf_cc[v]]

    out = bytearray()
    for l, r in zip(tree.left, tree.right):
        l, r = rec(l), rec(r)
        if record_size == 24:
            out += l.to_bytes(3, "big") + r.to_bytes(3, "big")
        elif record_size == 28:
            out += ((l & 0xFFFFFF).to_bytes(3, "big")
                    + bytes([((l >> 24) << 4) | (r >> 24)])
                    + (r & 0xFFFFFF).to_bytes(3, "big"))
        else:
            out += l.to_bytes(4, "big") + r.to_bytes(4, "big")
    out += b"\x00" * 16
    out += data
    out += METADATA_MARKER
    meta = {
        "binary_format_major_version": U(16, 2),
        "binary_format_minor_version": U(16, 0),
        "build_epoch": U(64, metadata["build_epoch"]),
        "database_type": metadata["database_type"],
        "description": metadata["description"],
        "ip_version": U(16, 6),
        "languages": metadata["languages"],
        "node_count": U(32, n),
        "record_size": U(16, record_size),
    }
    out += mmdb_encode(meta)
    stats.update(node_count=n, record_size=record_size, countries=len(codes),
                 data_section_bytes=len(data))
    return bytes(out), dict(stats)


def xz_compress(raw: bytes) -> bytes:
    # Preset 9e, but with the dictionary no bigger than the input (same
    # ratio, much less memory for whoever decompresses it at run time).
    dict_size = max(1 << 20, 1 << (len(raw) - 1).bit_length())
    dict_size = min(dict_size, 64 << 20)
    filters = [{"id": lzma.FILTER_LZMA2,
                "preset": 9 | lzma.PRESET_EXTREME,
                "dict_size": dict_size}]
    return lzma.compress(raw, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64,
                         filters=filters)


# --------------------------------------------------------------------------
# NOTICE
# --------------------------------------------------------------------------

def fmt_dropped(src: Source) -> str:
    if not src.dropped:
        return "none"
    return ", ".join(f"{cc} {n}" for cc, n in sorted(src.dropped.items()))


def _wrap(text: str, indent: str = "  ") -> str:
    return textwrap.fill(text, 76, initial_indent=indent,
                         subsequent_indent=indent + "      ")


def notice_text(src4: Source, src6: Source, version: str,
                data_date: _dt.datetime, date_origin: str) -> str:
    alias_text = (" and aliased at ::ffff:0:0/96 and 2002::/16"
                  if src4.aliases else "")
    when = data_date.astimezone(_dt.timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S UTC")
    header = "\n".join(("    " + h).rstrip() for h in src4.header)
    changes = textwrap.fill(
        "The data was changed: region-auditor's tools/build-geoip-db.py "
        "converted it from the Tor text format (start,end,country ranges) "
        "to the MaxMind DB (MMDB) format, splitting each range into CIDR "
        'networks stored as records {"country": {"iso_code": "<CC>"}}; '
        f"IPv4 networks are stored in the ::/96 subtree{alias_text}.", 76)
    return f"""\
region-auditor embedded GeoIP country database
==============================================

File: {OUT_NAME}  (MaxMind DB format, xz-compressed)

What it is
----------
IP address to country data from the IPFire Location database
<https://location.ipfire.org/>, by the IPFire Project (IPFire Development
Team).  It maps IPv4 and IPv6 networks to ISO 3166-1 country codes.

Where it came from
------------------
The data was taken from the text files /usr/share/tor/geoip and
/usr/share/tor/geoip6 of the Debian package "{PACKAGE}", version
{version}.  The Tor Project converted them from the IPFire Location
database with Tor's geoip-db-tool (see the header quoted below).

Data date: {when}
  (from {date_origin})

Licence and attribution
-----------------------
IPFire Location data \u00a9 IPFire Project (IPFire Development Team),
<https://location.ipfire.org/>.

Licensed under the Creative Commons Attribution-ShareAlike 4.0
International licence (CC BY-SA 4.0):
<https://creativecommons.org/licenses/by-sa/4.0/>

{OUT_NAME} is an adaptation of that data and is likewise licensed
under CC BY-SA 4.0.  The licence of region-auditor's source code does not
apply to this file.  The data is provided as is, without warranties of any
kind.

The licence statement above is the one in the data files' own header.
(Debian's /usr/share/doc/{PACKAGE}/copyright for this version still holds
an old text about the WebHosting.Info IP-to-Country database, which does
not describe this data, so it is not reproduced here.)

Changes made
------------
{changes}

Records whose code is not a current ISO 3166-1 alpha-2 country code were
dropped, so those addresses are not found in this database (code and
number of source ranges):
{_wrap("IPv4: " + fmt_dropped(src4))}
{_wrap("IPv6: " + fmt_dropped(src6))}
{_conflict_line(src6)}
Header of the source files (as shipped in {PACKAGE} {version})
-----------------------------------------------------------------------
{header}
"""


def _conflict_line(src6: Source) -> str:
    if not src6.alias_conflicts:
        return ""
    nets = ", ".join(f"{ipaddress.IPv6Address(lo)}-{ipaddress.IPv6Address(hi)}"
                     f" ({cc})" for lo, hi, cc in src6.alias_conflicts)
    return ("Also dropped, because the IPv4 data and its aliases take that\n"
            f"address space:\n{_wrap('IPv6: ' + nets)}\n")


# --------------------------------------------------------------------------
# Optional self-check with the maxminddb reader
# --------------------------------------------------------------------------

def self_check(raw: bytes, src4: Source, src6: Source, samples: int) -> bool:
    try:
        import maxminddb
    except ImportError:
        log("self-check skipped: 'pip install maxminddb' to enable it")
        return True
    import io
    reader = maxminddb.open_database(io.BytesIO(raw), maxminddb.MODE_FD)
    rnd = random.Random(0)
    bad = 0

    def ip(family: int, v: int) -> str:
        return str(ipaddress.IPv4Address(v) if family == 4
                   else ipaddress.IPv6Address(v))

    for src in (src4, src6):
        pool = src.ranges
        for lo, hi, cc in rnd.sample(pool, min(samples, len(pool))):
            for v in (lo, hi):
                got = reader.get(ip(src.family, v))
                if (got or {}).get("country", {}).get("iso_code") != cc:
                    log(f"MISMATCH {ip(src.family, v)}: {got} != {cc}")
                    bad += 1
        dropped = src.dropped_ranges
        for lo, hi, cc in rnd.sample(dropped, min(samples, len(dropped))):
            for v in (lo, hi):
                got = reader.get(ip(src.family, v))
                if got is not None:
                    log(f"DROPPED {cc} {ip(src.family, v)} found: {got}")
                    bad += 1
    for a in ("10.0.0.1", "127.0.0.1", "::1"):
        if reader.get(a) is not None:
            log(f"{a} unexpectedly found")
            bad += 1
    reader.close()
    log(f"self-check: {'OK' if not bad else f'{bad} FAILURES'}")
    return not bad


# --------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("geoip/data"),
                    help="output directory (default: geoip/data)")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--deb", type=Path, help="tor-geoipdb .deb to use")
    src.add_argument("--geoip", type=Path, help="extracted IPv4 text file")
    ap.add_argument("--geoip6", type=Path, help="extracted IPv6 text file")
    ap.add_argument("--source-version", default=None,
                    help="tor-geoipdb version for the NOTICE (with --geoip)")
    ap.add_argument("--no-aliases", action="store_true",
                    help="do not alias ::ffff:0:0/96 and 2002::/16 to IPv4")
    ap.add_argument("--keep-mmdb", action="store_true",
                    help="also write the uncompressed .mmdb")
    ap.add_argument("--self-check", type=int, default=0, metavar="N",
                    help="after building, look up first/last address of N "
                         "random ranges per family with maxminddb")
    args = ap.parse_args()
    if bool(args.geoip) != bool(args.geoip6):
        ap.error("--geoip and --geoip6 go together")

    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="build-geoip-db.") as tmp:
        tmp = Path(tmp)
        changelog = None
        if args.geoip:
            geoip, geoip6 = args.geoip, args.geoip6
            version = args.source_version or "unknown"
        else:
            deb = args.deb or download_deb(tmp)
            log(f"using {deb}")
            geoip, geoip6, version, changelog = extract_deb(deb, tmp)
            if args.source_version and args.source_version != version:
                log(f"warning: --source-version {args.source_version} != "
                    f".deb version {version}; using the .deb's")

        aliases = not args.no_aliases
        src4 = Source(geoip, 4, aliases)
        src6 = Source(geoip6, 6, aliases)
        src4.parse()
        src6.parse()
        cl_date = changelog_date(changelog) if changelog else None

    for s in (src4, src6):
        log(f"{s.path.name}: {s.total} ranges, {sum(s.dropped.values())} "
            f"dropped [{fmt_dropped(s)}], {len(s.ranges)} kept after merging; "
            f"generated {s.generated}")
        for lo, hi, cc in s.alias_conflicts:
            log(f"  dropped (IPv4/alias space): "
                f"{ipaddress.IPv6Address(lo)}-{ipaddress.IPv6Address(hi)} {cc}")

    if src4.generated and src6.generated:
        data_date = min(src4.generated, src6.generated)
        if src4.generated != src6.generated:
            log(f"warning: geoip/geoip6 dates differ; using {data_date}")
        date_origin = ('the "Generated:" line of the source files\' '
                       'IPFire export header')
    elif src4.generated or src6.generated:
        data_date = src4.generated or src6.generated
        date_origin = 'the "Generated:" line of one source file\'s header'
    elif cl_date:
        data_date = cl_date
        date_origin = f"date of the {PACKAGE} {version} Debian changelog entry"
    else:
        sys.exit("no data date: source files have no 'Generated:' header "
                 "and no .deb changelog is available")
    build_epoch = int(data_date.timestamp())

    metadata = {
        "build_epoch": build_epoch,
        "database_type": DATABASE_TYPE,
        "languages": ["en"],
        "description": {"en": f"IPFire Location country data via Debian "
                              f"{PACKAGE} {version}, converted to MMDB by "
                              f"region-auditor"},
    }
    log("building MMDB ...")
    raw, stats = build_mmdb(src4.ranges, src6.ranges, metadata,
                            aliases=not args.no_aliases)
    log(f"MMDB: {len(raw)} bytes, {stats}")
    log("compressing (xz -9e) ...")
    xz = xz_compress(raw)
    log(f"xz: {len(xz)} bytes")

    ok = True
    if args.self_check:
        ok = self_check(raw, src4, src6, args.self_check)

    args.out.mkdir(parents=True, exist_ok=True)
    outputs = [(args.out / OUT_NAME, xz),
               (args.out / "NOTICE",
                notice_text(src4, src6, version, data_date,
                            date_origin).encode("utf-8"))]
    if args.keep_mmdb:
        outputs.append((args.out / OUT_NAME[:-3], raw))
    for path, blob in outputs:
        tmp_path = path.with_name(path.name + ".tmp")
        tmp_path.write_bytes(blob)
        os.replace(tmp_path, path)
        log(f"wrote {path}")
    log(f"source {PACKAGE} {version}, data date {data_date.isoformat()} "
        f"(build_epoch {build_epoch}, from {date_origin}); "
        f"{time.monotonic() - t0:.0f}s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
