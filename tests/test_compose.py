"""docker-compose.yml runs the app as the README says: PostgreSQL, one scheduler, several web
processes behind a caching nginx (deploy/nginx.conf).

Read as data (PyYAML, and a small reader of nginx's syntax), so that it is checked on a
machine without Docker: every command parses with the app's own argparse parser, every
AGGREGATOR_* variable is one config.py reads, and the proxy's upstreams are the web
services. Where `docker compose` (or `docker-compose`) is installed, it reads the file too.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from aggregator import config
from aggregator.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
NGINX_CONF = ROOT / "deploy" / "nginx.conf"

COMPOSE = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))  # `<<` merges included
SERVICES: dict[str, dict] = COMPOSE["services"]
#: the services that run this image (the others are postgres and nginx)
APP = sorted(name for name, service in SERVICES.items() if "build" in service)


# -- reading the files -------------------------------------------------------------------


#: compose's variables: ${NAME}, ${NAME-default}, ${NAME:-default}, ${NAME?error},
#: ${NAME:?error} (https://docs.docker.com/reference/compose-file/interpolation/)
VARIABLE = re.compile(r"\$\{(\w+)(?:(:?)([-?])([^}]*))?\}")
#: what the tests set before compose reads the file, as an operator's .env does
ENV = {"POSTGRES_PASSWORD": "s3cret-from-env"}


class Unset(Exception):  # noqa: N818
    """A variable that compose requires (${NAME:?error}) is not set: compose stops here."""


def interpolated(text: str, env: dict[str, str] = ENV) -> str:
    """`text` as compose reads it with the variables of `env`: a default where one is unset
    (or empty, with `:-`); Unset with the file's words where one required is."""

    def value(m: re.Match) -> str:
        name, colon, kind, words = m.groups()
        given = env.get(name)
        if given is not None and (given or not colon):
            return given
        if kind == "?":
            raise Unset(f"{name}: {words}")
        return words or ""

    return VARIABLE.sub(value, text)


def variables(value) -> list[re.Match]:
    """Every ${...} anywhere in a part of the file."""
    if isinstance(value, dict):
        return [m for v in value.values() for m in variables(v)]
    if isinstance(value, list):
        return [m for v in value for m in variables(v)]
    return list(VARIABLE.finditer(value)) if isinstance(value, str) else []


def dockerfile_cmd() -> list[str]:
    """The Dockerfile's CMD (exec form): what a service without `command` runs."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    (line,) = [x for x in text.splitlines() if x.startswith("CMD ")][-1:]
    return json.loads(line.removeprefix("CMD "))


def command(name: str) -> list[str]:
    """A service's command as words, the Dockerfile's CMD when it has none."""
    words = SERVICES[name].get("command")
    if words is None:
        return dockerfile_cmd()
    return shlex.split(words) if isinstance(words, str) else list(words)


def arguments(name: str):
    """The app's own parser's reading of a service's command."""
    words = command(name)
    assert words[0] == "aggregator", f"{name} runs {words[0]!r}, not the aggregator command"
    return build_parser().parse_args(words[1:])


def runs_scheduler(name: str) -> bool:
    args = arguments(name)
    return args.command == "schedule" or (args.command == "serve" and not args.no_scheduler)


def web_services() -> list[str]:
    return [
        name
        for name in APP
        if arguments(name).command == "serve" and arguments(name).no_scheduler is True
    ]


def environment(name: str) -> dict[str, str]:
    env = SERVICES[name].get("environment", {})
    if isinstance(env, list):  # the KEY=value form
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


Directive = tuple[str, list[str], list]  # name, arguments, the block's directives (or [])


def nginx(text: str) -> list[Directive]:
    """nginx's configuration as nested directives: enough for what the tests look at."""
    tokens = re.findall(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'|[{};]|[^\s{};"\']+', _uncommented(text))
    stack: list[list[Directive]] = [[]]
    words: list[str] = []
    for token in tokens:
        if token == ";":
            stack[-1].append((words[0], words[1:], []))
            words = []
        elif token == "{":
            block: list[Directive] = []
            stack[-1].append((words[0], words[1:], block))
            stack.append(block)
            words = []
        elif token == "}":
            stack.pop()
        else:
            words.append(token.strip("\"'"))
    assert len(stack) == 1 and not words, "unbalanced braces or a directive without ;"
    return stack[0]


def _uncommented(text: str) -> str:
    # a # outside quotes starts a comment (the file's quoted strings hold none)
    return "\n".join(re.sub(r"#.*", "", line) for line in text.splitlines())


def find(directives: list[Directive], name: str) -> list[Directive]:
    return [d for d in directives if d[0] == name]


def one(directives: list[Directive], name: str) -> Directive:
    (found,) = find(directives, name)
    return found


NGINX = nginx(NGINX_CONF.read_text(encoding="utf-8"))
HTTP = one(NGINX, "http")[2]
SERVER = one(HTTP, "server")[2]
LOCATIONS = {" ".join(args): block for _, args, block in find(SERVER, "location")}


def server_setting(name: str) -> list[str]:
    return one(SERVER, name)[1]


def headers_sent() -> dict[str, str]:
    return {args[0].lower(): " ".join(args[1:]) for _, args, _ in find(SERVER, "proxy_set_header")}


# -- the services ------------------------------------------------------------------------


def test_the_file_has_the_services_of_a_big_network() -> None:
    assert {"db", "migrate", "web1", "web2", "scheduler", "proxy"} <= set(SERVICES)
    assert {"migrate", "web1", "web2", "scheduler"} <= set(APP)


def test_every_app_service_builds_the_repositorys_dockerfile() -> None:
    for name in APP:
        build = SERVICES[name]["build"]
        context = build if isinstance(build, str) else build.get("context", ".")
        assert (ROOT / context / "Dockerfile").resolve() == (ROOT / "Dockerfile").resolve()


@pytest.mark.parametrize("name", APP)
def test_every_app_command_parses_with_the_apps_own_parser(name: str) -> None:
    # argparse exits (SystemExit) on a flag or command it does not know
    assert arguments(name).command in {"serve", "schedule", "migrate"}


def test_exactly_one_service_runs_the_scheduler() -> None:
    # two would not fetch twice (one lease), but the compose file says which one does
    assert [name for name in APP if runs_scheduler(name)] == ["scheduler"]
    assert arguments("scheduler").command == "schedule"


def test_at_least_two_services_only_serve() -> None:
    assert len(web_services()) >= 2


def test_every_process_listens_on_every_interface_of_its_container() -> None:
    # the default, 127.0.0.1, would be unreachable from the proxy and from Prometheus
    for name in APP:
        args = arguments(name)
        if args.command in ("serve", "schedule"):
            assert args.host == "0.0.0.0", name


def test_the_migration_runs_once_before_any_other_process_opens_the_database() -> None:
    assert arguments("migrate").command == "migrate"
    assert SERVICES["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert str(SERVICES["migrate"].get("restart", "no")) == "no"
    for name in APP:
        if name != "migrate":
            after = SERVICES[name]["depends_on"]["migrate"]["condition"]
            assert after == "service_completed_successfully", name


def test_the_database_is_postgresql_on_a_named_volume_with_a_readiness_check() -> None:
    db = SERVICES["db"]
    image, _, tag = db["image"].partition(":")
    assert image in ("postgres", "library/postgres")
    assert int(re.match(r"\d+", tag).group()) >= 15, db["image"]
    volume = db["volumes"][0].split(":")[0]
    assert volume in COMPOSE["volumes"], "the data must outlive the container"
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])


@pytest.mark.parametrize("name", APP)
def test_every_app_service_reads_the_same_postgresql_database(name: str) -> None:
    url = urlsplit(interpolated(environment(name)["AGGREGATOR_DATABASE_URL"]))
    assert url.scheme == "postgresql"
    assert url.hostname == "db"
    db_env = SERVICES["db"]["environment"]
    assert url.username == db_env["POSTGRES_USER"]
    assert url.path == "/" + db_env["POSTGRES_DB"]
    assert url.password == interpolated(db_env["POSTGRES_PASSWORD"])
    assert environment(name) == environment(APP[0]), "one configuration for every process"


def test_no_password_has_a_default_and_every_use_requires_it() -> None:
    uses = [m for m in variables(COMPOSE) if m[1] == "POSTGRES_PASSWORD"]
    assert len(uses) >= 2, "the database's and the app's"  # both sides, one value
    for use in uses:
        assert (use[2], use[3]) == (":", "?"), f"{use[0]} must be ${{POSTGRES_PASSWORD:?...}}"
        assert "POSTGRES_PASSWORD" in use[4], "the error names what to set"
    # nothing else gives one either: no variable with a default in a URL's password, and no
    # password written into the file
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    assert "change-me" not in text
    for name in APP:
        # read before interpolation: the error's words hold a "?", which ends a URL's host
        password = re.fullmatch(
            r"postgresql://\w+:(.*)@db/\w+", environment(name)["AGGREGATOR_DATABASE_URL"]
        )[1]
        assert VARIABLE.fullmatch(password)[1] == "POSTGRES_PASSWORD", name


@pytest.mark.parametrize("unset", [{}, {"POSTGRES_PASSWORD": ""}], ids=["unset", "empty"])
def test_compose_refuses_to_start_without_a_password(unset) -> None:
    with pytest.raises(Unset, match="POSTGRES_PASSWORD"):
        interpolated(SERVICES["db"]["environment"]["POSTGRES_PASSWORD"], unset)
    for name in APP:
        with pytest.raises(Unset, match="POSTGRES_PASSWORD"):
            interpolated(environment(name)["AGGREGATOR_DATABASE_URL"], unset)


def test_the_readme_says_to_set_the_password_before_the_first_start() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    compose = readme[readme.index("**With Docker Compose.**") :]
    assert "POSTGRES_PASSWORD=" in compose[:2000]
    assert "refuses to start" in compose[:2000]


def test_every_aggregator_variable_set_is_one_the_app_reads() -> None:
    read = set(re.findall(r"AGGREGATOR_[A-Z_]+", Path(config.__file__).read_text()))
    for name in APP:
        named = {key for key in environment(name) if key.startswith("AGGREGATOR_")}
        assert named <= read, f"{name} sets {named - read}, which config.py never reads"
        assert {"AGGREGATOR_DATABASE_URL", "AGGREGATOR_PUBLISHED"} <= named


def test_the_web_processes_leave_the_access_log_to_the_proxy() -> None:
    for name in web_services():
        assert environment(name)["AGGREGATOR_ACCESS_LOG"] in ("0", "false", "no", "off")


def test_the_published_folder_is_on_one_named_volume_shared_by_every_app_service() -> None:
    mounts = set()
    for name in APP:
        folder = environment(name)["AGGREGATOR_PUBLISHED"]
        for volume in SERVICES[name]["volumes"]:
            source, target = volume.split(":")[:2]
            if folder == target or folder.startswith(target.rstrip("/") + "/"):
                mounts.add((source, target))
        assert mounts, f"{name}'s published folder {folder} is on no volume"
    ((source, target),) = mounts
    assert source in COMPOSE["volumes"]
    # the image's /data belongs to the app's user; a fresh volume on it takes that owner
    assert target == "/data"


@pytest.mark.parametrize("name", [n for n in APP if n != "migrate"])
def test_every_long_running_process_is_checked_on_its_own_port(name: str) -> None:
    check = SERVICES[name].get("healthcheck")
    test = " ".join(check["test"]) if check else (ROOT / "Dockerfile").read_text()
    assert f"127.0.0.1:{arguments(name).port}/healthz" in test


def test_the_proxy_has_the_nginx_config_read_only_and_is_the_only_published_port() -> None:
    proxy = SERVICES["proxy"]
    assert proxy["image"].startswith("nginx:")
    major, minor = (int(x) for x in re.match(r"(\d+)\.(\d+)", proxy["image"][6:]).groups())
    assert (major, minor) >= (1, 27), "upstream `resolve` needs nginx 1.27.3 or newer"
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in proxy["volumes"]
    assert [p.split(":")[-1] for p in proxy["ports"]] == ["80"]
    assert one(SERVER, "listen")[1][0] == "80"
    published = [name for name, service in SERVICES.items() if service.get("ports")]
    assert published == ["proxy"], "the database and the processes are reached through it"


def test_the_proxy_has_a_fixed_address_for_network_trusted_proxies() -> None:
    # the web processes believe X-Forwarded-For only from network.trusted_proxies
    address = ipaddress.ip_address(SERVICES["proxy"]["networks"]["default"]["ipv4_address"])
    (subnet,) = [c["subnet"] for c in COMPOSE["networks"]["default"]["ipam"]["config"]]
    assert address in ipaddress.ip_network(subnet)
    assert f"trusted_proxies: [{address}]" in COMPOSE_FILE.read_text()
    assert str(address) in NGINX_CONF.read_text()


def test_docker_compose_reads_the_file_where_it_is_installed() -> None:
    assert isinstance(COMPOSE, dict) and all(
        "image" in service or "build" in service for service in SERVICES.values()
    )
    if shutil.which("docker") and _runs(["docker", "compose", "version"]):
        tool = ["docker", "compose"]
    elif shutil.which("docker-compose"):
        tool = ["docker-compose"]
    else:
        return  # no Docker here: the checks above and the other tests are what is checked

    def config(env: dict[str, str]) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*tool, "-f", str(COMPOSE_FILE), "config", "-q"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={k: v for k, v in os.environ.items() if k != "POSTGRES_PASSWORD"} | env,
        )

    done = config(ENV)
    assert done.returncode == 0, done.stderr
    refused = config({})
    assert refused.returncode != 0 and "POSTGRES_PASSWORD" in refused.stderr


def _runs(words: list[str]) -> bool:
    try:
        done = subprocess.run(words, capture_output=True, timeout=30, check=False)
    except OSError:
        return False
    return done.returncode == 0


# -- the proxy ---------------------------------------------------------------------------


def test_the_upstream_is_every_web_service_on_its_port() -> None:
    (upstream,) = find(HTTP, "upstream")
    servers = {args[0] for _, args, _ in find(upstream[2], "server")}
    assert servers == {f"{name}:{arguments(name).port}" for name in web_services()}
    assert servers >= {"web1:8080", "web2:8080"}


def test_every_location_that_proxies_goes_to_the_web_services() -> None:
    (upstream,) = find(HTTP, "upstream")
    passes = [
        one(block, "proxy_pass")[1] for block in LOCATIONS.values() if find(block, "proxy_pass")
    ]
    assert passes and all(args == [f"http://{upstream[1][0]}"] for args in passes)


def test_the_cache_revalidates_with_the_apps_etag_and_serves_stale_on_errors() -> None:
    (zone,) = [a for a in one(HTTP, "proxy_cache_path")[1] if a.startswith("keys_zone=")]
    assert server_setting("proxy_cache") == [zone.removeprefix("keys_zone=").split(":")[0]]
    assert server_setting("proxy_cache_revalidate") == ["on"]
    assert {"error", "timeout", "updating"} <= set(server_setting("proxy_cache_use_stale"))
    # only the app's Cache-Control decides what is kept, and for how long
    assert not find(SERVER, "proxy_cache_valid") and not find(HTTP, "proxy_cache_valid")


def test_the_cache_key_holds_the_encoding_the_app_is_asked_for() -> None:
    # the app answers gzip or plain by Accept-Encoding; what it is sent is what the key holds
    encoding = headers_sent()["accept-encoding"]
    assert encoding.startswith("$")
    assert encoding in " ".join(server_setting("proxy_cache_key"))
    for where, block in LOCATIONS.items():
        for _, args, _ in find(block, "proxy_cache_key"):
            assert encoding in " ".join(args), where


def test_an_event_is_cached_per_accept_header() -> None:
    # /events/{id} answers its page or its JSON by Accept (its Vary names it): one entry each
    assert "$http_accept" in " ".join(one(LOCATIONS["/events/"], "proxy_cache_key")[1])


def test_the_proxy_tells_the_app_who_the_client_is() -> None:
    sent = headers_sent()
    assert sent["x-forwarded-for"] == "$proxy_add_x_forwarded_for"
    assert sent["x-forwarded-proto"] == "$scheme"
    assert sent["host"] == "$host"


def test_no_location_drops_the_headers_set_for_the_server() -> None:
    # nginx inherits proxy_set_header only into a location that sets none of its own
    for where, block in LOCATIONS.items():
        assert not find(block, "proxy_set_header"), where


def test_the_proxy_does_not_forward_the_clients_validators_over_its_own() -> None:
    # with the cache, nginx sends its stored ETag when it revalidates; a proxy_set_header
    # If-None-Match $http_if_none_match would replace it by the client's
    assert "if-none-match" not in headers_sent()
    assert "if-modified-since" not in headers_sent()


def test_check_and_healthz_are_never_cached() -> None:
    for path in ("= /check", "= /healthz"):
        assert one(LOCATIONS[path], "proxy_cache")[1] == ["off"], path
    # POSTs are never cached: nginx's default methods, GET and HEAD, are kept
    assert not find(SERVER, "proxy_cache_methods") and not find(HTTP, "proxy_cache_methods")


def test_a_check_may_upload_as_much_as_the_app_accepts() -> None:
    size = one(LOCATIONS["= /check"], "client_max_body_size")[1][0]
    assert size == "20m"
    assert config.LimitsConfig().max_bytes == 20 * 1024 * 1024


def test_the_proxy_does_not_compress_the_apps_bytes_again() -> None:
    # nginx's gzip would weaken the app's strong ETags
    assert one(HTTP, "gzip")[1] == ["off"]
