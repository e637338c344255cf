"""Secrets in service URLs: refused in configs, redacted wherever a URL is written down
(messages, the run's stored config, the run_started event, the published events)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from cival.config import ConfigError, StorageConfig, StreamsConfig, config_from_dict
from cival.core.urls import is_secret_parameter, redact, url_secrets
from cival.events.bus import InProcessBus
from cival.session import config_record, rebuild_report, run_paper
from cival.store.base import StoreLocation
from cival.store.sqlite import SqliteStore

SECRET = "hunter2-Zq8"

# (id, URL template with {s} for the secret, where the secret is)
POSTGRES_SECRETS = [
    ("userinfo", "postgresql://cival:{s}@db:5432/cival", "a password"),
    ("userinfo-no-user", "postgres://:{s}@db/cival", "a password"),
    ("password", "postgresql://cival@db/cival?password={s}", "the parameter 'password'"),
    ("password-upper", "postgresql://cival@db/cival?sslmode=require&PASSWORD={s}", "the parameter 'PASSWORD'"),
    ("password-encoded-name", "postgresql://cival@db/cival?pass%77ord={s}", "the parameter 'password'"),
    ("passwd", "postgresql://db/cival?passwd={s}", "the parameter 'passwd'"),
    ("pass", "postgresql://db/cival?pass={s}", "the parameter 'pass'"),
    ("sslpassword", "postgresql://db/cival?sslmode=verify-full&sslpassword={s}", "the parameter 'sslpassword'"),
    ("sslkey", "postgresql://db/cival?sslkey={s}", "the parameter 'sslkey'"),
    ("token", "postgresql://db/cival?token={s}", "the parameter 'token'"),
    ("secret", "postgresql://db/cival?Secret={s}", "the parameter 'Secret'"),
    ("client-secret", "postgresql://db/cival?client_secret={s}", "the parameter 'client_secret'"),
    ("key", "postgresql://db/cival?key={s}", "the parameter 'key'"),
    ("empty-password", "postgresql://db/cival?password=", "the parameter 'password'"),
]
REDIS_SECRETS = [
    ("userinfo", "rediss://user:{s}@cache:6380/0", "a password"),
    ("password", "redis://cache:6379/0?password={s}", "the parameter 'password'"),
    ("api-key", "redis://cache/0?api_key={s}", "the parameter 'api_key'"),
    ("apikey", "redis://cache/0?ApiKey={s}", "the parameter 'ApiKey'"),
    ("access-key", "redis://cache/0?access-key={s}", "the parameter 'access-key'"),
    ("auth", "redis://cache/0?auth={s}", "the parameter 'auth'"),
    ("auth-token", "redis://cache/0?auth_token={s}", "the parameter 'auth_token'"),
]
CASES = [pytest.param("storage", u, w, id=f"storage-{i}") for i, u, w in POSTGRES_SECRETS] + [
    pytest.param("streams", u, w, id=f"streams-{i}") for i, u, w in REDIS_SECRETS
]


def _config(**sections) -> dict:
    return {
        "name": "secrets",
        "master": {"initial_deposit": "10000"},
        "farms": [{"name": "f", "type": "breakout", "runtime": {"agents": "inline"},
                   "agents": [{"name": "a", "strategy": "darvas", "params": {"lookback": 10, "confirm": 2}}]}],
        "data": {"source": "synthetic", "bars": 300, "seed": 3},
        **sections,
    }


@pytest.mark.parametrize(("section", "template", "where"), CASES)
def test_a_secret_in_a_config_url_is_refused_without_echoing_it(section, template, where):
    with pytest.raises(ConfigError) as info:
        config_from_dict(_config(**{section: {"url": template.format(s=SECRET)}}), source="c.yaml")
    (issue,) = info.value.issues
    assert issue.path == f"{section}.url"
    assert issue.message.startswith(f"holds a secret ({where}); keep secrets out of config files: set ")
    env = "DATABASE_URL" if section == "storage" else "REDIS_URL"
    assert f"set {env} in the environment instead" in issue.message
    if section == "storage":
        assert "PGPASSWORD or a .pgpass file" in issue.message
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    ("section", "url"),
    [
        ("storage", "postgresql://cival@db:5432/cival?sslmode=require&sslrootcert=/etc/ca.pem&passfile=/home/c/.pgpass"),
        ("storage", "postgres:///cival?host=/var/run/postgresql"),
        ("streams", "rediss://cache:6380/0?ssl_cert_reqs=required"),
    ],
)
def test_urls_without_secrets_are_accepted_as_written(section, url):
    config = config_from_dict(_config(**{section: {"url": url}}))
    assert getattr(config, section).url == url
    assert url_secrets(url) == [] and redact(url) == url


def test_a_url_that_cannot_be_parsed_is_refused_without_echoing_it():
    with pytest.raises(ConfigError) as info:
        config_from_dict(_config(storage={"url": f"postgresql://u:{SECRET}@[::1/db"}))
    assert "storage.url: is not a valid URL" in str(info.value)
    assert SECRET not in str(info.value)


def test_a_url_of_the_wrong_type_is_refused_without_echoing_it():
    with pytest.raises(ConfigError) as info:
        config_from_dict(_config(streams={"url": {"password": SECRET}}))
    assert "streams.url: must be text" in str(info.value)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("template", [u for _, u, _ in POSTGRES_SECRETS + REDIS_SECRETS if "{s}" in u])
def test_redact_masks_every_secret_and_keeps_the_rest(template):
    url = template.format(s=SECRET)
    redacted = redact(url)
    assert SECRET not in redacted
    assert "***" in redacted
    assert redacted.split("://")[0] == url.split("://")[0]
    assert redacted.split("@")[-1].split("/")[0] == url.split("@")[-1].split("/")[0]  # the host stays
    assert redact(redacted) == redacted


def test_redact_keeps_other_parameters_and_the_user():
    url = f"postgresql://cival:{SECRET}@db:5432/cival?sslmode=require&sslpassword={SECRET}&application_name=x"
    assert redact(url) == "postgresql://cival:***@db:5432/cival?sslmode=require&sslpassword=***&application_name=x"


@pytest.mark.parametrize(
    ("name", "secret"),
    [("password", True), ("PassWord", True), ("db_password", True), ("sslkey", True), ("api-key", True),
     ("aws_secret_access_key", True), ("passfile", False), ("sslmode", False), ("sslcert", False),
     ("user", False), ("keepalives", False), ("host", False)],
)
def test_which_parameters_are_secret(name, secret):
    assert is_secret_parameter(name) is secret


def test_a_store_location_never_shows_its_password():
    where = StoreLocation(url=f"postgresql://cival:{SECRET}@db/cival?sslpassword={SECRET}")
    for text in (str(where), repr(where), f"{where}", f"{where!r}"):
        assert SECRET not in text
        assert "db/cival" in text


def test_a_run_never_records_or_publishes_a_url_secret(tmp_path, monkeypatch):
    """A config that holds secrets in its URLs (built around validation, as code may do)
    and service URLs with passwords in the environment: neither the stored run nor any
    published event holds a secret, and the run's report still rebuilds from the store."""
    monkeypatch.setenv("DATABASE_URL", f"postgresql://cival:{SECRET}-env@127.0.0.1:9/cival")
    monkeypatch.setenv("REDIS_URL", f"redis://:{SECRET}-env@127.0.0.1:9/0")
    valid = config_from_dict(_config())
    leaky = valid.model_copy(update={
        "storage": StorageConfig.model_construct(
            url=f"postgresql://cival:{SECRET}@db/cival?sslpassword={SECRET}&sslmode=require", path=None, migrate=True
        ),
        "streams": StreamsConfig.model_construct(url=f"redis://cache:6379/0?password={SECRET}", buffer=1000),
    })
    record = config_record(leaky)
    assert record["storage"]["url"] == "postgresql://cival:***@db/cival?sslpassword=***&sslmode=require"
    assert record["streams"]["url"] == "redis://cache:6379/0?password=***"
    assert SECRET not in json.dumps(record)

    path = tmp_path / "runs.sqlite3"
    bus = InProcessBus()
    published: list[str] = []
    bus.subscribe(lambda event: published.append(json.dumps(event.model_dump(mode="json"), default=str)))
    store = SqliteStore(path)
    try:
        result = run_paper(leaky, local=True, store=store, events=bus)
        assert result.audit.ok and result.run_id
        stored = store.run(result.run_id).config
        assert stored["storage"]["url"] == record["storage"]["url"]
        started = store.events(result.run_id, limit=1)[0]
        assert started.type == "run_started"
        assert started.data["config"]["streams"]["url"] == "redis://cache:6379/0?password=***"
        rebuilt, _ = rebuild_report(store, result.run_id)
        assert rebuilt == result.report
    finally:
        store.close()
    assert any('"run_started"' in e for e in published)
    assert published and not [e for e in published if SECRET in e]
    with sqlite3.connect(path) as db:
        dump = "\n".join(db.iterdump())
    assert result.run_id in dump and "run_started" in dump
    assert SECRET not in dump
