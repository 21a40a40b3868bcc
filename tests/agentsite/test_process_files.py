"""The Procfile and docker-compose.yml must describe the same four processes."""

import shlex

import yaml

from tests.live import ROOT

PROCESSES = {"web", "worker", "beat", "flower"}


def procfile_commands() -> dict[str, str]:
    commands = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            commands[name.strip()] = command.strip()
    return commands


def compose_commands() -> dict[str, str]:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    commands = {}
    for name in PROCESSES & set(services):
        argv = services[name]["command"]
        assert argv[:2] == ["sh", "-c"], f"{name}: run through sh -c so variables expand"
        script = argv[2]
        assert script.startswith("exec "), f"{name}: exec so the process gets SIGTERM"
        # Compose turns $$ into $ before the container's shell sees it.
        commands[name] = script.removeprefix("exec ").replace("$$", "$")
    return commands


def test_procfile_has_exactly_the_four_processes():
    assert set(procfile_commands()) == PROCESSES


def test_compose_runs_the_same_commands_as_the_procfile():
    procfile, compose = procfile_commands(), compose_commands()
    assert set(compose) == PROCESSES
    for name in PROCESSES:
        assert shlex.split(compose[name]) == shlex.split(procfile[name]), name


def test_compose_has_postgres_and_redis_with_healthchecks():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in ("postgres", "redis"):
        assert "healthcheck" in services[name]
    for name in PROCESSES:
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"


def test_worker_command_sets_concurrency_and_prefetch_one():
    argv = shlex.split(procfile_commands()["worker"])
    assert argv[argv.index("--concurrency") + 1] == "${AGENT_MAX_CONCURRENCY:-4}"
    assert argv[argv.index("--prefetch-multiplier") + 1] == "1"


def test_only_the_worker_relaxes_docker_for_the_agent_sandbox():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert set(services["worker"]["security_opt"]) == {
        "seccomp=unconfined",
        "apparmor=unconfined",
        "systempaths=unconfined",
    }
    assert "cap_add" not in services["worker"] and not services["worker"].get("privileged")
    for name in PROCESSES - {"worker"}:
        assert "security_opt" not in services[name], name
