import subprocess
import sys

from tests.live import ROOT

PRODUCTION = {
    "PATH": "/usr/bin:/bin",
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "x7Kq2" * 12,
    "DJANGO_ALLOWED_HOSTS": "agents.example.com",
    "DATABASE_URL": "sqlite:////tmp/agentsite-deploy-check.sqlite3",
}


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_production_settings_pass_check_deploy_without_warnings():
    done = manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_production_without_secret_key_refuses_to_start():
    env = {k: v for k, v in PRODUCTION.items() if k != "DJANGO_SECRET_KEY"}
    done = manage("check", env=env)
    assert done.returncode != 0
    assert "DJANGO_SECRET_KEY is required" in done.stderr


def test_development_defaults_work_with_no_variables():
    done = manage("check", env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr


def shown(setting: str, **env: str) -> str:
    """The value of `setting` with these variables (and PATH) in the environment."""
    show = f"from django.conf import settings; print(settings.{setting})"
    done = manage("shell", "-c", show, env={"PATH": "/usr/bin:/bin", **env})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def refusal(**env: str) -> str:
    """What the settings say when they refuse to start with these variables."""
    refused = manage("check", env={"PATH": "/usr/bin:/bin", **env})
    assert refused.returncode != 0
    return refused.stderr


def test_the_agent_sandbox_is_on_unless_turned_off():
    assert shown("AGENT_SANDBOX") == "on"
    assert "AGENT_SANDBOX must be on or off" in refusal(AGENT_SANDBOX="maybe")


def test_the_agents_cpu_weight_is_10_and_out_of_range_is_refused():
    assert shown("AGENT_SANDBOX_CPU_WEIGHT") == "10"
    for wrong in ("-1", "10001"):
        message = refusal(AGENT_SANDBOX_CPU_WEIGHT=wrong)
        assert "AGENT_SANDBOX_CPU_WEIGHT must be from 0 to 10000" in message


def test_workers_run_the_threads_pool_unless_told_otherwise():
    assert shown("CELERY_WORKER_POOL") == "threads"
    assert "AGENT_WORKER_POOL must be prefork or threads" in refusal(AGENT_WORKER_POOL="gevent")


def test_with_rabbitmq_workers_run_prefork_and_refuse_threads():
    amqp = {"CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//"}
    assert shown("CELERY_WORKER_POOL", **amqp) == "prefork"
    message = refusal(**amqp, AGENT_WORKER_POOL="threads")
    assert "AGENT_WORKER_POOL=threads needs a Redis broker" in message
