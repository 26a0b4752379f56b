"""Config parsing, egress resolution and org attribution."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditor.attribution import Attributor
from auditor.config import ConfigError, load_config, parse_config
from auditor.events import Egress
from tests.conftest import make_event

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "auditor.toml"
BASE = {
    "site": [
        {"name": "hk-office", "networks": ["10.20.0.0/16", "2001:db8:20::/48"], "egress_ip": "43.198.12.34"},
        {"name": "hk-lab", "networks": ["10.20.9.0/24"], "egress_ip": "43.198.99.1"},
    ],
    "org": [{"name": "acme", "networks": ["10.20.0.0/16"]}, {"name": "acme-lab", "networks": ["10.20.9.0/24"]}],
    "source": [{"path": "/var/log/squid/access.log*", "egress_ip": "203.0.113.7", "org": "platform"}],
}


def test_example_config_loads() -> None:
    config = load_config(EXAMPLE)
    assert [s.name for s in config.sites] == ["hk-office", "sg-office"]
    assert config.overrides[0].country_code == "SG"


@pytest.mark.parametrize(
    "orig_h, egress_h, source_path, egress, basis",
    [
        # 1. an egress the event records
        ("10.20.1.5", "198.51.100.1", "x.log", "198.51.100.1", "event"),
        # 2. the source's configured egress_ip (glob matches rotated files)
        ("10.20.1.5", "", "/var/log/squid/access.log.1", "203.0.113.7", "source:/var/log/squid/access.log*"),
        # 3. the site containing the client; the most specific site wins
        ("10.20.1.5", "", "x.log", "43.198.12.34", "site:hk-office"),
        ("10.20.9.5", "", "x.log", "43.198.99.1", "site:hk-lab"),
        ("2001:db8:20::5", "", "x.log", "43.198.12.34", "site:hk-office"),
        ("::ffff:10.20.1.5", "", "x.log", "43.198.12.34", "site:hk-office"),
        # 4. the client itself when public
        ("8.8.8.8", "", "x.log", "8.8.8.8", "client"),
        # 5. else none: private, shared, documentation, loopback, not an address
        ("192.168.77.9", "", "x.log", "", "none"),
        ("100.64.0.1", "", "x.log", "", "none"),
        ("203.0.113.9", "", "x.log", "", "none"),
        ("::1", "", "x.log", "", "none"),
        ("client.example.com", "", "x.log", "", "none"),
    ],
)
def test_egress_rule(orig_h: str, egress_h: str, source_path: str, egress: str, basis: str) -> None:
    config = parse_config(BASE, "t.toml")
    result = Attributor(config).egress(make_event(orig_h=orig_h, egress_h=egress_h), config.source(source_path))
    assert (result.ip, result.basis) == (egress, basis)


@pytest.mark.parametrize(
    "orig_h, source_path, org",
    [
        ("10.20.1.5", "x.log", "acme"),
        ("10.20.9.5", "x.log", "acme-lab"),
        ("10.99.0.1", "x.log", "unattributed"),
        ("10.99.0.1", "/var/log/squid/access.log", "platform"),
        ("10.20.1.5", "/var/log/squid/access.log", "acme"),
        ("not-an-ip", "x.log", "unattributed"),
    ],
)
def test_org_attribution(orig_h: str, source_path: str, org: str) -> None:
    config = parse_config(BASE, "t.toml")
    assert Attributor(config).org(make_event(orig_h=orig_h), config.source(source_path)) == org


@pytest.mark.parametrize(
    "data, message",
    [
        (
            {"site": [{"name": "x", "networks": ["10.0.0.0/33"], "egress_ip": "1.2.3.4"}]},
            r"\[\[site\]\] #1: '10.0.0.0/33' is not a network; write it in CIDR form",
        ),
        ({"site": [{"name": "x", "networks": ["10.0.0.0/8"], "egress_ip": "nat.example"}]}, "'nat.example' is not an IP address"),
        ({"site": [{"name": "x", "networks": [], "egress_ip": "1.2.3.4"}]}, "'networks' must be a non-empty list"),
        ({"org": [{"networks": ["10.0.0.0/8"]}]}, r"\[\[org\]\] #1: 'name' must be a non-empty string"),
        ({"org": [{"name": "a", "networks": ["10.0.0.0/8"], "netwroks": []}]}, "unknown key 'netwroks'; allowed keys: name, networks"),
        ({"override": [{"network": "198.51.100.0/24", "country": "Singapore"}]}, "'SINGAPORE' is not an ISO 3166-1 alpha-2 code"),
        ({"override": [{"network": "198.51.100.0/24", "country": "UA", "region": "RU-CR"}]}, "is not an ISO 3166-2 code of UA"),
        ({"sites": []}, "unknown section 'sites'"),
        ({"site": {"name": "x"}}, r"must be written as \[\[site\]\] tables"),
        ({"store": {"path": "x"}}, r"\[store\] has unknown key 'path'; allowed: url"),
        ({"source": [{"egress_ip": "1.2.3.4"}]}, "'path' must be a non-empty string"),
        ({"policy": {"providers": "openai"}}, r"\[policy\] providers must be a list of provider ids"),
        ({"policy": {"provider": ["openai"]}}, r"\[policy\] takes one key"),
    ],
)
def test_config_errors_name_the_entry(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_config(data, "auditor.toml")
    assert str(info.value).startswith("auditor.toml: ")


def test_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file; check the path given to --config"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[site]\nname=1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")  # tomllib recurses: a RecursionError, not a TOMLDecodeError
    with pytest.raises(ConfigError, match="nested too deeply to read; fix the file"):
        load_config(deep)
    assert load_config(None).sites == ()


def test_orgs_by_vercel_project() -> None:
    config = parse_config(
        {"org": [{"name": "chat", "vercel_projects": ["prj_chat", "chat-app"]}, {"name": "net", "networks": ["10.0.0.0/8"]}]}, "t.toml"
    )
    attributor = Attributor(config)
    source = config.source("x")
    assert attributor.org(make_event(orig_h="", project_id="prj_chat"), source) == "chat"
    assert attributor.org(make_event(orig_h="", project_id="prj_zzz", project_name="chat-app"), source) == "chat"
    assert attributor.org(make_event(orig_h="10.1.1.1", project_id="prj_zzz"), source) == "net"
    egress = attributor.egress(make_event(orig_h="", egress_region="vercel:hkg1"), source)
    assert (egress.ip, egress.region, egress.label, egress.known) == ("", "vercel:hkg1", "vercel:hkg1", True)


def test_a_configured_source_egress_wins_over_the_region_an_event_records() -> None:
    # Vercel Secure Compute, or a firewall whose VPC egresses elsewhere: the operator knows the address.
    config = parse_config(
        {
            "source": [{"path": "drains/*.ndjson", "egress_ip": "203.0.113.7"}],
            "site": [{"name": "hq", "networks": ["10.0.0.0/8"], "egress_ip": "198.51.100.1"}],
        },
        "t.toml",
    )
    attributor = Attributor(config)
    event = make_event(orig_h="10.1.1.1", egress_region="vercel:hkg1")
    assert attributor.egress(event, config.source("drains/a.ndjson")) == Egress("203.0.113.7", "source:drains/*.ndjson")
    assert attributor.egress(event, config.source("other.ndjson")) == Egress("", "event", region="vercel:hkg1")  # before the site
    assert (
        attributor.egress(make_event(orig_h="10.1.1.1", egress_h="192.0.2.9", egress_region="vercel:hkg1"), config.source("drains/a.ndjson")).ip
        == "192.0.2.9"
    )


@pytest.mark.parametrize(
    "org, message",
    [
        ({"name": "a"}, r"give 'networks' \(client CIDRs\) or 'vercel_projects'"),
        ({"name": "a", "vercel_projects": "prj_1"}, "'vercel_projects' must be a list"),
        ({"name": "a", "vercel_projects": [""]}, "'vercel_projects' must be a list"),
    ],
)
def test_org_project_errors(org: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"org": [org]}, "t.toml")


def test_source_format_and_field_map() -> None:
    config = parse_config(
        {
            "source": [
                {"path": "/var/log/zeek/*.log", "format": "zeek"},
                {"path": "/var/log/gw/*.json", "format": "json", "fields": {"ts": "time", "server_name": "request.host", "orig_h": "client.ip"}},
            ]
        },
        "t.toml",
    )
    zeek, gateway = config.sources
    assert (zeek.format, zeek.fields, zeek.field_map) == ("zeek", (), None)
    assert gateway.format == "json"
    assert gateway.field_map == {"ts": "time", "server_name": "request.host", "orig_h": "client.ip"}
    assert config.source("/var/log/gw/a.json") is gateway
    assert config.source("/elsewhere.log").format == ""
    hash(gateway)  # still a frozen, hashable value


@pytest.mark.parametrize(
    "source, message",
    [
        (
            {"format": "apache"},
            r"format 'apache' is not a log format; use one of squid, combined, .*json \(or one of them inside a wrapper: squid\+docker, squid\+ecs, squid\+cri\), or leave it out to detect it",
        ),
        ({"format": 7}, "'format' must be a non-empty string"),
        ({"format": "json"}, r'format = "json" needs a field map; add fields = \{ ts = "time", server_name = "request.host" \}'),
        (
            {"format": "zeek", "fields": {"ts": "ts", "server_name": "server_name"}},
            r"'fields' is read only with format = \"json\"; add that, or remove 'fields'",
        ),
        ({"fields": {"ts": "ts", "server_name": "host"}}, r"'fields' is read only with format = \"json\""),
        ({"format": "json", "fields": "ts=time"}, r"'fields' must be a table of event field = \"dotted.path\""),
        ({"format": "json", "fields": {"server_name": "host"}}, r"'fields' needs ts = "),
        ({"format": "json", "fields": {"ts": "time"}}, r"'fields' needs server_name = .* or url = "),
        ({"format": "json", "fields": {"ts": "time", "host": "host"}}, r"unknown field 'host' in 'fields'; known: ts, server_name, url"),
        ({"format": "json", "fields": {"ts": "time", "server_name": "request..host"}}, r"'fields' entry 'server_name' must be a dotted path"),
        ({"format": "json", "fields": {"ts": "time", "server_name": 3}}, r"'fields' entry 'server_name' must be a dotted path"),
        ({"formats": "json"}, "unknown key 'formats'; allowed keys: egress_ip, fields, format, org, path"),
    ],
)
def test_source_format_errors(source: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_config({"source": [{"path": "/var/log/gw.json"} | source]}, "auditor.toml")
    assert str(info.value).startswith("auditor.toml: [[source]] #1: ")
    assert str(info.value).count(". ") == 0  # one sentence


def test_source_field_map_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "auditor.toml"
    path.write_text(
        '[[source]]\npath = "gw.json"\nformat = "json"\nfields = { ts = "time", orig_h = "client.ip", server_name = "request.host", status = "response.code" }\n'
    )
    (entry,) = load_config(path).sources
    assert entry.field_map == {"ts": "time", "orig_h": "client.ip", "server_name": "request.host", "status": "response.code"}


@pytest.mark.parametrize(
    "text, message",
    [
        # Found by a hostile-input hunt: each used to end with a traceback or a Python repr.
        ("x = " + "9" * 5000 + "\n", "not valid TOML (Exceeds the limit (4300 digits)"),
        ('[[source]]\npath = "a\\u0000b"\n', "'path' holds a NUL character"),
        ('[[site]]\nname = "hq"\nnetworks = ["10.0.0.0/8"]\n', "'egress_ip' is missing; give the public address"),
        ('[[site]]\nname = "hq"\nnetworks = ["10.0.0.0/8"]\negress_ip = 1979-05-27\n', "'egress_ip' must be a string like"),
        ('[[override]]\nnetwork = "192.0.2.0/24"\ncountry = "ǅǅ"\n', "is not an ISO 3166-1 alpha-2 code"),
    ],
)
def test_bad_values_stop_with_one_sentence(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_byte_order_mark_is_not_toml_but_is_read_past(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(b"\xef\xbb\xbf" + b'[[site]]\nname = "hq"\nnetworks = ["10.0.0.0/8"]\negress_ip = "203.0.113.7"\n')
    assert [s.name for s in load_config(path).sites] == ["hq"]
