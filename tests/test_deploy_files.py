"""deploy/ (compose file, nginx, Dockerfile) and docs/deployment.md agree with the code: Docker is not
on the project's machines, so the files are checked here, not run."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from typer.main import get_command

from core.settings import Settings
from service.cli import app

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "deploy/compose.yaml").read_text())


def setting_exists(variable: str) -> bool:
    """Whether ``SKULENS_A__B`` names a field of the settings (``a.b``)."""
    node: object = Settings.model_fields
    for part in variable.removeprefix("SKULENS_").lower().split("__"):
        fields = node if isinstance(node, dict) else getattr(node, "model_fields", {})
        if part not in fields:
            return False
        node = fields[part].annotation
    return True


def test_the_compose_file_has_every_piece_of_the_layout():
    services = COMPOSE["services"]
    assert {"postgres", "etcd", "minio", "milvus", "models", "api", "worker", "lb"} <= set(services)
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["milvus"]["image"].startswith("milvusdb/milvus:")
    assert services["api"]["deploy"]["replicas"] >= 2 and services["worker"]["deploy"]["replicas"] >= 2


def test_its_commands_are_skulens_commands_and_its_settings_are_settings():
    commands = set(get_command(app).commands)  # type: ignore[attr-defined]
    for name in ("models", "api", "worker"):
        command = COMPOSE["services"][name]["command"]
        assert command[0] == "skulens" and command[1] in commands, command
    variables = set()
    for service in COMPOSE["services"].values():
        variables |= {k for k in (service.get("environment") or {}) if k.startswith("SKULENS_")}
    assert {"SKULENS_STORE__URL", "SKULENS_INDEX__URI", "SKULENS_FILES__ROOT"} <= variables
    assert all(setting_exists(v) or v in ("SKULENS_API_READ_KEYS", "SKULENS_API_WRITE_KEYS") for v in variables), \
        sorted(v for v in variables if not setting_exists(v))
    assert not setting_exists("SKULENS_STORE__NO_SUCH")


def test_nginx_sends_requests_to_the_api_replicas_port():
    conf = (ROOT / "deploy/nginx.conf").read_text()
    port = COMPOSE["services"]["api"]["command"][COMPOSE["services"]["api"]["command"].index("--port") + 1]
    assert re.search(rf"server api:{port}\b", conf)
    assert "./nginx.conf" in COMPOSE["services"]["lb"]["volumes"][0]


def test_the_image_installs_the_extras_that_exist():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "'.[distributed]'" in (ROOT / "deploy/Dockerfile").read_text()
    assert {"psycopg", "psycopg-pool", "pymilvus", "procrastinate"} <= {re.split(r"[\[<>=]", d)[0]
                                                                        for d in extras["distributed"]}


def test_the_deployment_doc_names_options_the_commands_have():
    doc = (ROOT / "docs/deployment.md").read_text()
    migrate = get_command(app).commands["migrate"]  # type: ignore[attr-defined]
    options = {o for p in migrate.params for o in p.opts}
    block = next(b for b in re.findall(r"```sh\n(.*?)```", doc, flags=re.S) if " migrate " in b)
    named = re.findall(r"(--[a-z-]+)", block.split(" migrate ", 1)[1])
    assert len(named) >= 3 and set(named) <= options, named
    assert "SKULENS_INGEST__STALLED_S" in doc and setting_exists("SKULENS_INGEST__STALLED_S")
