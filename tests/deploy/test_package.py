"""The wheel: built from a copy of the source tree, installed into a fresh virtualenv together with its
declared dependencies, then `ccfo init` and `ccfo check-config` run from that venv, far from the source tree,
so the example config must come from the installed package (share/ccfo), never from the checkout.

Offline and quick: the wheel is built without build isolation by the dev venv's setuptools and wheel (the
`test` extra installs them, as the build-system table asks). The dependencies are installed for real, from a
local wheelhouse (.cache/wheelhouse): `pip download` fills it once from pip's configured indexes, pinned to
the versions the dev venv runs (`pip freeze` as constraints); the install itself is `pip install --no-index
--find-links wheelhouse`, so a missing or misspelt dependency fails it. The new venv sees nothing of the dev
venv (no .pth, no system site-packages): the test asserts that `controller` and its dependencies are
imported from the new venv.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.deploy.kit import REPO

# Installing the dependencies for real: ~10 s on a quiet 2-core box, a minute or two when it is busy.
pytestmark = pytest.mark.timeout(300)

# What the build reads (pyproject.toml's packages, package data and data-files); nothing else of the checkout,
# where other runs may be writing (.lab, reports, caches) while this one copies.
SOURCES = ("pyproject.toml", "MANIFEST.in", "README.md", "ccfo", "controller", "agents", "drills", "lab", "config",
           "systemd", "docs")
SKIP = shutil.ignore_patterns("__pycache__", "*.py[cod]", ".lab", "reports")


def pip(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args], capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        have = (importlib.metadata.version("setuptools"), importlib.metadata.version("wheel"))
    except importlib.metadata.PackageNotFoundError as exc:
        pytest.fail(f"the dev venv lacks {exc.name}: run `make venv` (the test extra installs it)")
    if int(have[0].split(".")[0]) < 68:
        pytest.fail(f"the dev venv has setuptools {have[0]}, the build needs >=68: run `make venv`")
    work = tmp_path_factory.mktemp("wheel")
    (work / "src").mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, work / "src" / name, ignore=SKIP)
        else:
            shutil.copy2(REPO / name, work / "src" / name)
    pip("wheel", "--no-build-isolation", "--no-deps", "--no-index", "--quiet", "-w", str(work / "dist"),
        str(work / "src"))
    (found,) = (work / "dist").glob("ccfo-*.whl")
    return found


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Wheels of every declared dependency, at the dev venv's versions, in a folder kept between runs."""
    house = REPO / ".cache" / "wheelhouse"
    house.mkdir(parents=True, exist_ok=True)
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = tmp_path_factory.mktemp("pins") / "constraints.txt"
    pins.write_text(pip("freeze", "--exclude-editable").stdout)
    pip("download", "--quiet", "--only-binary=:all:", "-c", str(pins), "-d", str(house), *deps, timeout=240)
    return house


@pytest.fixture(scope="module")
def venv(wheel: Path, wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = tmp_path_factory.mktemp("venv") / "ccfo"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, timeout=120)
    python = env / "bin" / "python"
    pip("--python", str(python), "install", "--no-index", "--find-links", str(wheelhouse), "--quiet", "--no-compile",
        str(wheel), timeout=240)  # --no-compile: byte-compiling numpy and friends is most of an install's time
    return env


def test_the_wheel_carries_the_data_the_services_need(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    data = "ccfo-0.1.0.data/data/share/ccfo/"
    for needed in ("controller/web/index.html", "controller/web/app.js", "controller/web/runbooks.js",
                   "controller/web/servers.js", "controller/web/cluster.js",
                   "controller/web/app.css", "agents/mib/CCFO-MIB.txt",
                   "drills/sipp/uas_answer.xml", f"{data}config/site.yaml", f"{data}config/rules.yaml",
                   f"{data}config/checklists/weekend-upgrade.yaml", f"{data}config/asterisk/manager-ccfo.conf",
                   f"{data}config/prometheus/prometheus.yml", f"{data}config/prometheus/alerts.yml",
                   f"{data}systemd/ccfo-agent.service", f"{data}systemd/ccfo-controller.service",
                   f"{data}systemd/50-ccfo-agent.rules", f"{data}systemd/ccfo.sysusers.conf",
                   f"{data}systemd/examples/cti.service", f"{data}mib/CCFO-MIB.txt",
                   f"{data}docs/installation.md"):
        assert needed in names, needed
    scenarios = sorted(p.name for p in (REPO / "drills" / "scenarios").glob("*.yaml"))
    assert all(f"drills/scenarios/{s}" in names for s in scenarios)
    assert not any(n.startswith("tests/") for n in names)


def test_installed_ccfo_init_then_check_config(venv: Path, tmp_path: Path) -> None:
    ccfo = venv / "bin" / "ccfo"
    probe = "import controller, fastapi, pysnmp, pydantic, yaml; print(*(m.__file__ for m in " \
            "(controller, fastapi, pysnmp, pydantic, yaml)), sep=chr(10))"
    where = subprocess.run([str(venv / "bin" / "python"), "-I", "-c", probe], capture_output=True, text=True,
                           check=True, cwd=tmp_path).stdout.split()
    assert len(where) == 5 and all(w.startswith(str(venv)) for w in where), where
    done = subprocess.run([str(ccfo), "init", "--site", "acme-callcenter", "--controller-url",
                           "https://10.20.0.5:8443", "etc-ccfo"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    cfg = tmp_path / "etc-ccfo"
    site = yaml.safe_load((cfg / "site.yaml").read_text())
    assert site["site"]["name"] == "acme-callcenter"
    assert site["controller"]["tls_cert_file"] == "tls/controller.crt"
    assert (cfg / "checklists" / "weekend-upgrade.yaml").is_file()
    assert (cfg / "secrets").stat().st_mode & 0o777 == 0o700
    done = subprocess.run([str(ccfo), "check-config", "--config", "etc-ccfo"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "config OK: site acme-callcenter" in done.stdout
    share = venv / "share" / "ccfo"
    unit = "systemd/ccfo-agent.service"
    assert (share / unit).read_text() == (REPO / unit).read_text()
