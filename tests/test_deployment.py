"""compose.yaml, the Dockerfile and demo.env: what the README's Docker and Compose commands
run. ``docker compose config`` checks the file where docker is installed; here, the file's
content is checked against what the hub needs."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from hub.config import parse_config
from hub.plugins import get_plugin_manager

ROOT = Path(__file__).parent.parent


def demo_env() -> dict[str, str]:
    values = {}
    for line in (ROOT / "demo.env").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_redis_keeps_every_acknowledged_write_and_evicts_nothing() -> None:
    redis = compose()["services"]["redis"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command and "--appendfsync always" in command
    assert "--maxmemory-policy noeviction" in command
    [volume] = redis["volumes"]
    assert volume.endswith(":/data") and volume.split(":")[0] in compose()["volumes"]
    assert redis["healthcheck"]["test"][-1] == "ping"


def test_serve_and_a_scalable_worker_wait_for_a_healthy_redis() -> None:
    services = compose()["services"]
    assert services["serve"]["command"] == ["hub", "serve"]
    assert services["worker"]["command"] == ["hub", "worker"]
    assert "ports" not in services["worker"] and "container_name" not in services["worker"]
    for name in ("serve", "worker"):
        service = services[name]
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert service["environment"]["HUB_STORE"] == "redis://redis:6379/0"
        assert service["healthcheck"]["test"][0] == "CMD"
    assert "/readyz" in services["serve"]["healthcheck"]["test"][-1]


def test_the_sample_is_valid_with_compose_and_the_demo_values() -> None:
    services = compose()["services"]
    [env_file] = services["serve"]["env_file"]
    assert env_file == "${HUB_ENV_FILE:-demo.env}"
    environ = {**demo_env(), **services["serve"]["environment"]}
    config = parse_config(
        (ROOT / "hub.yaml").read_text(),
        get_plugin_manager(),
        environ=environ,
        where=str(ROOT / "hub.yaml"),
    )
    assert config.store.url == "redis://redis:6379/0" and not config.store.embedded


def test_the_image_runs_the_sample_on_the_embedded_store_with_the_demo_values() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (\S+)", dockerfile, re.MULTILINE):
        assert (ROOT / source).exists(), source
    env = dict(re.findall(r"(HUB_\w+)=(\S+)", dockerfile))
    assert env["HUB_STORE_PATH"] == "/var/lib/hub/store"
    config = parse_config(
        (ROOT / "hub.yaml").read_text(),
        get_plugin_manager(),
        environ={**demo_env(), **env},
        where=str(ROOT / "hub.yaml"),  # the image copies the schema file beside it too
    )
    assert config.store.embedded and str(config.store.path) == "/var/lib/hub/store"
    assert "chown hub /var/lib/hub" in dockerfile and "VOLUME /var/lib/hub" in dockerfile


def test_the_readme_commands_use_the_demo_values() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Docker") :]
    assert "docker run -p 8080:8080 --env-file demo.env scheduling-hub" in section
    assert "docker compose up --build" in section


def has_compose() -> bool:
    if shutil.which("docker") is None:
        return False
    version = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=60)
    return version.returncode == 0


@pytest.mark.skipif(not has_compose(), reason="needs docker with its compose plugin")
def test_docker_compose_accepts_the_file() -> None:
    done = subprocess.run(
        ["docker", "compose", "config", "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
