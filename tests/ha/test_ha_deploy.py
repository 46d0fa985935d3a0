"""The reference deployment in deploy/: its Patroni settings and the compose file agree.

The HA tests' cluster runs the same bootstrap settings (deploy/devcluster.py reads them),
so what is checked here is what those tests exercise.
"""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_reference_patroni_config_is_synchronous_and_rewinds() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "patroni" / "patroni.yml").read_text())
    dcs = config["bootstrap"]["dcs"]
    assert dcs["synchronous_mode"] is True
    assert dcs["ttl"] >= 20 and dcs["loop_wait"] + 2 * dcs["retry_timeout"] <= dcs["ttl"]
    assert dcs["postgresql"]["use_pg_rewind"] and dcs["postgresql"]["use_slots"]
    assert dcs["postgresql"]["parameters"]["hot_standby"] == "on"
    assert "raft" in config and config["postgresql"]["bin_dir"].endswith("/18/bin")
    hba = config["postgresql"]["pg_hba"]
    assert all("trust" not in line for line in hba if line.startswith("host"))


def test_compose_runs_three_nodes_that_know_each_other_on_loopback_ports() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yml").read_text())
    services = compose["services"]
    assert sorted(services) == ["node1", "node2", "node3"]
    for name, service in services.items():
        env = service["environment"]
        assert env["PATRONI_NAME"] == name and env["PATRONI_RAFT_SELF_ADDR"] == f"{name}:5010"
        partners = {p.strip("'") for p in env["PATRONI_RAFT_PARTNER_ADDRS"].split(",")}
        assert partners == {f"{other}:5010" for other in services if other != name}
        assert all(port.startswith("127.0.0.1:") for port in service["ports"])
        assert "PATRONI_SUPERUSER_PASSWORD" in env and "PATRONI_RESTAPI_PASSWORD" in env
    assert (ROOT / "deploy" / "patroni" / "Dockerfile").read_text().count("patroni[raft]") == 1
