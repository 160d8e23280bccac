"""Deployment and tooling files, checked statically (no Docker engine is needed to run the suite)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from crm.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def load_yaml(path: str) -> Any:
    return yaml.safe_load((ROOT / path).read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml("docker-compose.yaml")
    return data


@pytest.fixture(scope="module")
def lines() -> list[str]:
    return (ROOT / ".env.example").read_text().splitlines()


class TestCompose:
    def test_production_shape(self, compose: dict[str, Any]) -> None:
        services = compose["services"]
        assert {
            "nginx",
            "api",
            "postgres",
            "redis",
            "worker",
            "beat",
            "prometheus",
            "grafana",
            "migrate",
        } <= set(services)
        assert services["postgres"]["image"].startswith("postgres:17")
        assert services["redis"]["image"].startswith("redis:7")

    def test_api_runs_several_workers_after_migrations(self, compose: dict[str, Any]) -> None:
        api = compose["services"]["api"]
        command = " ".join(api["command"])
        assert "crm serve" in command
        assert "--workers" in command
        assert api["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert "crm migrate" in " ".join(compose["services"]["migrate"]["command"])

    def test_worker_and_beat(self, compose: dict[str, Any]) -> None:
        assert compose["services"]["worker"]["command"][:2] == ["crm", "worker"]
        assert compose["services"]["beat"]["command"][:2] == ["crm", "beat"]

    def test_only_nginx_is_public(self, compose: dict[str, Any]) -> None:
        for name, service in compose["services"].items():
            for port in service.get("ports", []):
                if name != "nginx":
                    assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} to every interface"

    def test_trusted_proxy_is_nginx(self, compose: dict[str, Any]) -> None:
        nginx_ip = compose["services"]["nginx"]["networks"]["backend"]["ipv4_address"]
        assert compose["services"]["api"]["environment"]["TRUSTED_PROXIES"] == nginx_ip

    def test_mounted_files_exist(self, compose: dict[str, Any]) -> None:
        for service in compose["services"].values():
            for volume in service.get("volumes", []):
                source = volume.split(":")[0]
                if source.startswith("./"):
                    assert (ROOT / source).exists(), source

    def test_app_environment_names_are_settings(self, compose: dict[str, Any]) -> None:
        known = {name.upper() for name in Settings.model_fields} | {
            "JWT_SECRET_KEY",
            "PROMETHEUS_MULTIPROC_DIR",
        }
        for name in ("api", "worker", "beat", "migrate"):
            unknown = set(compose["services"][name]["environment"]) - known
            assert not unknown, f"{name}: {unknown}"


class TestMonitoring:
    def test_prometheus_scrapes_the_api(self) -> None:
        config = load_yaml("deploy/prometheus.yml")
        jobs = {job["job_name"]: job for job in config["scrape_configs"]}
        api = jobs["crm-api"]
        assert api["metrics_path"] == "/metrics"
        assert api["dns_sd_configs"][0]["names"] == ["api"]
        assert api["dns_sd_configs"][0]["port"] == 8000

    def test_grafana_provisioning(self) -> None:
        datasources = load_yaml("deploy/grafana/provisioning/datasources/prometheus.yaml")
        assert datasources["datasources"][0]["url"] == "http://prometheus:9090"
        providers = load_yaml("deploy/grafana/provisioning/dashboards/crm.yaml")
        assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"

    def test_dashboard_queries_existing_metrics(self) -> None:
        from prometheus_client import REGISTRY

        import crm.core.metrics  # noqa: F401  (registers the series)

        exported = {sample.name for family in REGISTRY.collect() for sample in family.samples} | {
            metric.name + suffix
            for metric in REGISTRY.collect()
            for suffix in ("", "_total", "_bucket", "_sum", "_count")
        }
        # sampled at scrape time (crm.system.router, crm.worker.metrics)
        exported |= {"crm_jobs", "crm_celery_queue_length"}
        dashboard = json.loads((ROOT / "deploy/grafana/dashboards/crm-api.json").read_text())
        uid = load_yaml("deploy/grafana/provisioning/datasources/prometheus.yaml")["datasources"][0]["uid"]
        assert dashboard["panels"]
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] == uid
            for target in panel["targets"]:
                used = set(re.findall(r"\bcrm_[a-z_]+", target["expr"]))
                assert used
                assert used <= exported, used - exported


class TestImageAndProxy:
    def test_dockerfile_multi_stage_uv_non_root(self) -> None:
        text = (ROOT / "Dockerfile").read_text()
        assert len(re.findall(r"^FROM ", text, flags=re.MULTILINE)) >= 2
        assert "uv sync --frozen --no-dev" in text
        users = re.findall(r"^USER (\S+)", text, flags=re.MULTILINE)
        assert users
        assert users[-1] not in ("root", "0")

    def test_nginx_proxies_to_the_api(self) -> None:
        text = (ROOT / "nginx/nginx.conf").read_text()
        assert text.count("{") == text.count("}")
        assert "server api:8000" in text
        assert "proxy_pass http://crm_api" in text
        assert "X-Forwarded-For" in text


class TestEnvExample:
    def test_lists_every_setting(self, lines: list[str]) -> None:
        named = {m.group(1) for line in lines if (m := re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=", line))}
        aliases = {"secret_key": "JWT_SECRET_KEY"}
        missing = {aliases.get(f, f.upper()) for f in Settings.model_fields} - named
        assert not missing

    def test_values_are_valid_settings(self, lines: list[str]) -> None:
        values = dict(line.split("=", 1) for line in lines if re.match(r"^[A-Z][A-Z0-9_]*=", line))
        settings = Settings(_env_file=None, **{k.lower(): v for k, v in values.items() if v})  # type: ignore[call-arg]
        assert settings.environment == "development"
        assert settings.create_admin_on_startup

    def test_admin_password_passes_the_policy(self, lines: list[str]) -> None:
        from crm.auth.passwords import check_password_strength

        password = next(line.split("=", 1)[1] for line in lines if line.startswith("ADMIN_PASSWORD="))
        assert len(password) >= 8
        assert check_password_strength(password) == password


@pytest.mark.parametrize(
    "script", ["scripts/lib.sh", "scripts/services.sh", "scripts/run.sh", "scripts/test.sh", ".ci/run"]
)
def test_shell_scripts_parse(script: str) -> None:
    subprocess.run(["bash", "-n", str(ROOT / script)], check=True, timeout=30)


def test_makefile_has_run_and_test() -> None:
    text = (ROOT / "Makefile").read_text()
    assert re.search(r"^run:", text, flags=re.MULTILINE)
    assert re.search(r"^test:", text, flags=re.MULTILINE)
