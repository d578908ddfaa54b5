"""The Dockerfile and .dockerignore against the code and the Kubernetes manifests.

No Docker engine runs where the tests run, so the image is not built here. What can go wrong
without one is checked instead: the instructions are parsed, the build context that
.dockerignore leaves is reproduced and the build stage's wheel is built from exactly that
context (offline: no dependencies, build tools from the test extra), and the HEALTHCHECK command
is run against a status endpoint that answers and one that does not.
"""

from __future__ import annotations

import http.server
import json
import re
import shutil
import subprocess
import sys
import threading
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
BASE_IMAGE = "python:3.11-slim"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, with continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, arguments = pending.strip().partition(" ")
        result.append((keyword.upper(), " ".join(arguments.split())))
        pending = ""
    assert not pending, "the Dockerfile ends in a continuation line"
    return result


def stages() -> list[list[tuple[str, str]]]:
    split: list[list[tuple[str, str]]] = []
    for keyword, arguments in instructions():
        if keyword == "FROM":
            split.append([])
        assert split, "the Dockerfile must start with FROM"
        split[-1].append((keyword, arguments))
    return split


def _exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(item, str) for item in value)
    return value


def test_multi_stage_on_the_slim_python_base() -> None:
    build, final = stages()
    assert build[0] == ("FROM", f"{BASE_IMAGE} AS build")
    assert final[0] == ("FROM", BASE_IMAGE)
    assert any(k == "RUN" and "pip wheel" in a and "--wheel-dir /wheels" in a for k, a in build)
    final_text = " ".join(a for _, a in final)
    assert "from=build" in final_text and "--no-index" in final_text, "install the built wheels only"
    assert not any(k in ("COPY", "ADD") and "from=build" not in a for k, a in final), "no sources in the image"


def test_the_image_runs_as_the_manifests_user_not_root() -> None:
    _, final = stages()
    users = [a for k, a in final if k == "USER"]
    assert users, "the final stage sets no USER, so it runs as root"
    uid = users[-1].split(":")[0]
    assert uid not in ("root", "0")
    manifests = yaml.safe_load_all((ROOT / "deploy/kubernetes/base/server-statefulset.yaml").read_text())
    run_as = next(iter(manifests))["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    assert int(uid) == run_as


def test_entrypoint_is_meshfed_and_the_default_command_parses() -> None:
    from meshfed.server.cli.main import build_parser

    _, final = stages()
    assert _exec_form(dict(final)["ENTRYPOINT"]) == ["meshfed"]
    command = _exec_form(dict(final)["CMD"])
    assert build_parser().parse_args(command).command == "agent"


def _healthcheck() -> list[str]:
    _, final = stages()
    (check,) = [a for k, a in final if k == "HEALTHCHECK"]
    options, _, command = check.partition("CMD ")
    assert re.search(r"--interval=\S+", options) and re.search(r"--timeout=\S+", options)
    argv = _exec_form(command)
    assert argv[:2] == ["python3", "-c"], "the check uses the image's Python, not curl"
    return argv


class _Status(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        ok = self.path == "/v1/status/leader"
        self.send_response(200 if ok else 404)
        self.end_headers()
        self.wfile.write(b'""')

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def status_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.240.252", 0), _Status)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_healthcheck_passes_while_the_api_answers(status_server: http.server.HTTPServer) -> None:
    argv = _healthcheck()
    host, port = status_server.server_address[:2]
    script = argv[2].replace("http://127.0.0.1:8500", f"http://{host}:{port}")
    assert script != argv[2]
    assert subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=10).returncode == 0


def test_healthcheck_fails_when_nothing_answers(status_server: http.server.HTTPServer) -> None:
    argv = _healthcheck()
    host, port = status_server.server_address[:2]
    status_server.shutdown()
    status_server.server_close()
    script = argv[2].replace("http://127.0.0.1:8500", f"http://{host}:{port}")
    assert subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=10).returncode != 0


# --- the build context ---------------------------------------------------------------------------


def _pattern(text: str) -> re.Pattern[str]:
    """A .dockerignore pattern: `*` within one path element, `**` across any number of them."""
    out = ""
    for part in re.split(r"(\*\*/?|\*|\?)", text.strip("/")):
        out += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(part, re.escape(part))
    return re.compile(out)


def context_files() -> list[str]:
    """The files `docker build .` sends: a path is left out when the last pattern that matches it,
    or one of its parent directories, is not a `!` exception (Docker's rule)."""
    rules = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append((line.startswith("!"), _pattern(line.lstrip("!"))))
    kept = []
    for path in sorted(p for p in ROOT.rglob("*") if p.is_file()):
        relative = path.relative_to(ROOT).as_posix()
        parts = relative.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        included = True
        for exception, pattern in rules:
            if any(pattern.fullmatch(prefix) for prefix in prefixes):
                included = exception
        if included:
            kept.append(relative)
    return kept


def test_the_context_holds_the_packages_and_nothing_else() -> None:
    files = context_files()
    tops = {name.split("/")[0] for name in files}
    package_dirs = set(PYPROJECT["tool"]["setuptools"]["package-dir"].values())
    assert tops == {"pyproject.toml", "README.md", *package_dirs}
    assert not [name for name in files if "__pycache__" in name or name.endswith(".pyc")]
    sources = {source for k, a in stages()[0] if k == "COPY" for source in a.split()[:-1]}
    assert sources == tops, "the build stage copies every package folder, and only what the context has"


def test_the_build_stage_builds_a_wheel_from_the_context(tmp_path: Path) -> None:
    """What `pip wheel .` does in the build stage, from the same files, without dependencies."""
    context = tmp_path / "context"
    for name in context_files():
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, context / name)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--wheel-dir", str(tmp_path / "wheels"), str(context)],
        capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (wheel,) = (tmp_path / "wheels").glob("meshfed-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for package in PYPROJECT["tool"]["setuptools"]["packages"]:
        assert package.replace(".", "/") + "/__init__.py" in names, package
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "meshfed = meshfed.server.cli.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
