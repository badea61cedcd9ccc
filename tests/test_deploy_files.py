#!/usr/bin/python3
"""docker-compose.yml and infra/Dockerfile stay honest: the compose file is valid YAML,
runs Kafka 3.9 in KRaft mode with PostgreSQL and Redis, runs every flashsale service the
build produces, and configures the services only with FLASHSALE_* variables the code really
reads; the Dockerfile is multi-stage and installs what infra/bootstrap.sh installs.
Usage: test_deploy_files.py SOURCE_DIR EXECUTABLE..."""
import glob
import re
import sys

import yaml


def main(src, executables):
    compose = yaml.safe_load(open(src + "/docker-compose.yml"))
    services = compose["services"]
    for infra in ("kafka", "postgres", "redis"):
        assert infra in services, "compose lacks %s" % infra
    assert services["kafka"]["image"].startswith("apache/kafka:3.9"), services["kafka"]["image"]
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]

    commands = {}
    for name, svc in services.items():
        cmd = svc.get("command") or []
        if isinstance(cmd, str):
            cmd = cmd.split()
        if cmd:
            commands[cmd[0]] = name
    missing = [e for e in executables if e.startswith("flashsale-") and e not in commands]
    assert not missing, "executables not in docker-compose.yml: %s" % missing

    source = ""
    for path in glob.glob(src + "/**/*.c", recursive=True) + glob.glob(src + "/infra/*.sh"):
        source += open(path).read()
    known = set(re.findall(r'"(FLASHSALE_[A-Z0-9_]+)"', source))
    known |= set(re.findall(r"\b(FLASHSALE_[A-Z0-9_]+)=", source))
    known |= set(re.findall(r"\$\{(FLASHSALE_[A-Z0-9_]+)", source))      # shell reads
    known |= set(re.findall(r"int_setting (FLASHSALE_[A-Z0-9_]+)", source))
    used = set()
    for name, svc in services.items():
        env = svc.get("environment") or {}
        if isinstance(env, dict):
            used |= {k for k in env if k.startswith("FLASHSALE_")}
    unknown = used - known
    assert not unknown, "compose sets variables the code never reads: %s" % sorted(unknown)
    for needed in ("FLASHSALE_KAFKA_BROKERS", "FLASHSALE_PG_URL", "FLASHSALE_REDIS_HOST"):
        assert needed in used, needed

    docker = open(src + "/infra/Dockerfile").read()
    assert len(re.findall(r"^FROM ", docker, re.M)) >= 2, "Dockerfile is not multi-stage"
    boot = open(src + "/infra/bootstrap.sh").read()
    for dev in re.findall(r"\b(lib[a-z0-9]+-dev)\b", boot):
        assert dev in docker, "Dockerfile lacks %s (bootstrap.sh installs it)" % dev
    # the edge: nginx in front of the API, the public port its own
    edge = services.get("edge")
    assert edge and edge["command"][-1] == "run" and "edge.sh" in edge["command"][0], edge
    assert any(str(p).endswith(":8080") for p in edge.get("ports", [])), edge.get("ports")
    assert not any(str(p) == "8080:8080" for p in services["api"].get("ports", [])), "the API is public"
    trusted = services["api"]["environment"].get("FLASHSALE_TRUSTED_PROXIES")
    assert trusted == edge["networks"]["default"]["ipv4_address"], (trusted, edge["networks"])
    assert "nginx" in docker and "infra/edge" in docker, "the image lacks the edge"
    print("deploy files: %d services, %d executables covered, %d FLASHSALE_* variables checked"
          % (len(services), len(executables), len(used)))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
