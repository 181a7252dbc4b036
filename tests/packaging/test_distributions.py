"""The distributions as a user gets them, not the checkout.

``python -m build`` makes the sdist and, from it, the wheel (as a package index user's pip
would). The wheel goes into a fresh virtualenv without extras, where a user's first steps
must work: import with a bad multiprocess directory, ``--version``, the shipped rules and
dashboards, the runbook, a tracked run on ``/metrics``, and one clear line for each thing that
needs an extra. The sdist is unpacked, its whole suite collects and its unit tests pass.

These tests have a folder and marker of their own (``packaging``): they build, create
virtualenvs and install from the package index (build isolation fetches setuptools; the wheel's
dependencies come from pip's cache or the index), so ``-m "not packaging"`` leaves them out
offline. They use no backend server; promtool checks the copied rule tests.
"""

from __future__ import annotations

import email.parser
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from otel_jobtrack.generators import shipped
from tests.backends import CACHE_DIR, REPO_ROOT, ensure_backends, promtool
from tests.unit.test_distribution_metadata import relative_links

BUILD_TIMEOUT = 600
RUNS = {"success": 2.0, "failure": 1.0, "limited": 0.0}
WORKLOAD = Path("tests") / "workloads" / "install_checks.py"


@dataclass(frozen=True)
class Dists:
    sdist: Path
    wheel: Path


def _run(
    cmd: list[str | os.PathLike[str]],
    *,
    timeout: float = 180,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
        check=False,
    )


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment minus what would leak the checkout or our settings into a run."""
    skip = ("OTEL_", "PROMETHEUS_MULTIPROC_DIR", "WITHOUT", "PYTHONPATH", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    out = tmp_path_factory.mktemp("dist")
    proc = _run(
        [sys.executable, "-m", "build", "--outdir", out, REPO_ROOT],
        timeout=BUILD_TIMEOUT,
        env=_clean_env(),
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return Dists(sdist=sdist, wheel=wheel)


@dataclass(frozen=True)
class Venv:
    root: Path
    work: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    def run(self, *args: str, timeout: float = 180, **env: str) -> subprocess.CompletedProcess[str]:
        """``args`` with the virtualenv's ``bin`` first on PATH, outside the checkout."""
        path = f"{self.root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
        return _run(list(args), timeout=timeout, env=_clean_env(PATH=path, **env), cwd=self.work)

    def workload(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.python), str(REPO_ROOT / WORKLOAD), *args, **env)


@pytest.fixture(scope="module")
def venv(dists: Dists, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    base = tmp_path_factory.mktemp("venv")
    root, work = base / "venv", base / "work"
    work.mkdir()
    made = _run([sys.executable, "-m", "venv", root], env=_clean_env())
    assert made.returncode == 0, made.stderr
    env = Venv(root, work)
    installed = env.run(str(env.python), "-m", "pip", "install", "--quiet", str(dists.wheel))
    assert installed.returncode == 0, installed.stderr[-4000:]
    return env


def _wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(zf.read(name).decode())


def _checkout_files(*roots: str) -> dict[str, bytes]:
    """Files under the checkout's ``roots`` (folders or files), by path from the checkout."""
    found = {}
    for root in roots:
        path = REPO_ROOT / root
        paths = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for p in paths:
            if "__pycache__" not in p.parts:
                found[p.relative_to(REPO_ROOT).as_posix()] = p.read_bytes()
    return found


def _tree(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in files}


def _one_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


# ---------------------------------------------------------------------------------- the wheel


def test_the_wheel_ships_exactly_the_checked_in_rules_dashboards_and_runbook(
    dists: Dists,
) -> None:
    prefix = f"otel_jobtrack/{shipped.PACKAGE_DIR}/"
    with zipfile.ZipFile(dists.wheel) as zf:
        packaged = {
            n[len(prefix) :]: zf.read(n)
            for n in zf.namelist()
            if n.startswith(prefix) and not n.endswith("/")
        }
    # Byte for byte: a packaged copy that differs from the source of truth fails here.
    assert packaged == _checkout_files(*shipped.SHIPPED)


def test_the_wheel_metadata(dists: Dists) -> None:
    meta = _wheel_metadata(dists.wheel)
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta.get_all("License-File") == ["LICENSE"]
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert urls["Repository"] == shipped.REPOSITORY_URL and "Changelog" in urls
    core = [r for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r]
    assert sorted(r.split("<")[0].split(">")[0].lower() for r in core) == [
        "prometheus-client",
        "wrapt",
    ]
    with zipfile.ZipFile(dists.wheel) as zf:
        licenses = [n for n in zf.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
        assert len(licenses) == 1
        assert zf.read(licenses[0]) == (REPO_ROOT / "LICENSE").read_bytes()
    description = meta.get_payload()
    assert isinstance(description, str) and "# otel-jobtrack" in description
    assert relative_links(description) == []  # rendered as the package index renders it


# ---------------------------------------------------------------------------------- the sdist


def _git_files() -> list[str] | None:
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        return None
    proc = _run(["git", "-C", REPO_ROOT, "ls-files"])
    return proc.stdout.split() if proc.returncode == 0 else None


def test_the_sdist_holds_every_file_of_the_project(dists: Dists) -> None:
    with tarfile.open(dists.sdist) as tar:
        top = tar.getnames()[0].split("/")[0]
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        pkg_info = tar.extractfile(f"{top}/PKG-INFO")
        assert pkg_info is not None
        meta = email.parser.Parser().parsestr(pkg_info.read().decode())
    assert meta["License-Expression"] == "Apache-2.0"
    tracked = _git_files()
    if tracked is None:  # not a git checkout (e.g. this very sdist): check what must be there
        tracked = [*_checkout_files("tests", "alerts", "dashboards", "docs", "scripts")]
    missing = sorted(set(tracked) - names - {".gitignore"})
    assert missing == [], f"not in the sdist: {missing}"
    for required in ("LICENSE", "CHANGELOG.md", "tests/conftest.py", "tests/backends.py"):
        assert required in names


@pytest.fixture(scope="module")
def unpacked_sdist(dists: Dists, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("sdist")
    with tarfile.open(dists.sdist) as tar:
        tar.extractall(target, filter="data")
    (root,) = target.iterdir()
    # The backend binaries the unit tests use (promtool, Prometheus): this checkout's cache,
    # as scripts/install-backends would have filled it, instead of fetching them again.
    ensure_backends()
    (root / ".cache").mkdir()
    (root / ".cache" / "backends").symlink_to(CACHE_DIR)
    return root


def _sdist_pytest(root: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """pytest in the unpacked sdist, importing its otel_jobtrack (this process's packages)."""
    env = _clean_env(PYTHONPATH=str(root))
    return _run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        timeout=timeout,
        env=env,
        cwd=root,
    )


def test_the_unpacked_sdist_collects_its_whole_suite(unpacked_sdist: Path) -> None:
    where = _run(
        [sys.executable, "-c", "import otel_jobtrack; print(otel_jobtrack.__file__)"],
        env=_clean_env(PYTHONPATH=str(unpacked_sdist)),
        cwd=unpacked_sdist,
    )
    assert Path(where.stdout.strip()).is_relative_to(unpacked_sdist), where.stdout
    sdist = _sdist_pytest(unpacked_sdist, "--collect-only", "-q", timeout=300)
    assert sdist.returncode == 0, sdist.stdout[-4000:] + sdist.stderr[-2000:]
    checkout = _run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q"],
        env=_clean_env(),
        cwd=REPO_ROOT,
        timeout=300,
    )
    ids = _test_ids(sdist.stdout)
    assert ids and ids == _test_ids(checkout.stdout)


def _test_ids(collected: str) -> list[str]:
    """Test ids from ``--collect-only -q``, object addresses in parameters left out."""
    return [re.sub(r" at 0x[0-9a-f]+", "", line) for line in collected.splitlines() if "::" in line]


@pytest.mark.slow
def test_the_unpacked_sdist_passes_its_unit_tests(unpacked_sdist: Path) -> None:
    proc = _sdist_pytest(unpacked_sdist, "-q", "-m", "unit", timeout=1200)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and " failed" not in proc.stdout


# ---------------------------------------------------------------------------------- the venv


def test_the_fresh_environment_holds_only_the_core_dependencies(venv: Venv) -> None:
    listed = venv.run(str(venv.python), "-m", "pip", "list", "--format=json")
    names = {d["name"].lower().replace("_", "-") for d in json.loads(listed.stdout)}
    assert names - {"pip", "setuptools"} == {"otel-jobtrack", "prometheus-client", "wrapt"}
    where = venv.run(str(venv.python), "-c", "import otel_jobtrack; print(otel_jobtrack.__file__)")
    assert Path(where.stdout.strip()).is_relative_to(venv.root), where.stdout


def test_version(venv: Venv, dists: Dists) -> None:
    proc = venv.run("otel-jobtrack", "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"otel-jobtrack {_wheel_metadata(dists.wheel)['Version']}"


def test_import_with_a_bad_multiprocess_dir_serves_a_tracked_run(venv: Venv) -> None:
    missing = str(venv.work / "no-such-dir")
    help_ = venv.run("otel-jobtrack", "--help", PROMETHEUS_MULTIPROC_DIR=missing)
    assert help_.returncode == 0 and "runbook" in help_.stdout, help_.stderr
    proc = venv.workload("serve", PROMETHEUS_MULTIPROC_DIR=missing)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["runs"] == RUNS and out["multiprocess"] is False
    assert out["problems"] == {"multiprocess setup": 1.0}
    assert missing in _one_line(proc)


def test_multiprocess_mode_works_from_the_wheel(venv: Venv) -> None:
    directory = venv.work / "multiproc"
    directory.mkdir()
    proc = venv.workload("serve", PROMETHEUS_MULTIPROC_DIR=str(directory))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"runs": RUNS, "problems": {}, "multiprocess": True}


def test_rules_output_dir_writes_the_shipped_rules_and_their_tests_pass(venv: Venv) -> None:
    out = venv.work / "alerts"
    proc = venv.run("otel-jobtrack", "rules", "--output-dir", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "otel-jobtrack[rules]" in _one_line(proc)
    assert _tree(out) == _tree(REPO_ROOT / "alerts")
    tests = sorted(str(p.relative_to(out)) for p in (out / "tests").glob("*.yaml"))
    assert tests
    result = promtool("test", "rules", *tests, cwd=out, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    checked = venv.run("otel-jobtrack", "rules", "--check", "--output-dir", str(out))
    assert checked.returncode == 0, checked.stderr


def test_dashboards_output_dir_writes_the_shipped_dashboards(venv: Venv) -> None:
    out = venv.work / "dashboards"
    proc = venv.run("otel-jobtrack", "dashboards", "--output-dir", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "otel-jobtrack[dashboards]" in _one_line(proc)
    assert _tree(out) == _tree(REPO_ROOT / "dashboards")


def test_runbook(venv: Venv) -> None:
    whole = venv.run("otel-jobtrack", "runbook")
    assert whole.returncode == 0 and whole.stdout == (REPO_ROOT / "docs/runbook.md").read_text()
    one = venv.run("otel-jobtrack", "runbook", "JobTrackMissedRun")
    assert one.returncode == 0 and one.stdout.startswith("## JobTrackMissedRun\n")


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["rules", "--print-config"], "rules"),
        (["rules", "--set", "failure_ratio=0.2"], "rules"),
        (["dashboards", "--datasource", "prom"], "dashboards"),
        (["bench", "--quick"], "otlp"),
    ],
)
def test_a_command_without_its_extra_ends_with_one_line(
    venv: Venv, args: list[str], extra: str
) -> None:
    proc = venv.run("otel-jobtrack", *args)
    assert proc.returncode == 2
    assert f"pip install 'otel-jobtrack[{extra}]'" in _one_line(proc)
    assert proc.stdout == ""


@pytest.mark.parametrize(
    ("env", "extra"),
    [
        ({"OTEL_METRICS_EXPORTER": "otlp"}, "otlp"),
        ({"OTEL_METRICS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "otlp-grpc"),
    ],
)
def test_an_otlp_exporter_without_its_extra_is_one_log_line(
    venv: Venv, env: dict[str, str], extra: str
) -> None:
    proc = venv.workload("serve", **env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["runs"] == RUNS and out["problems"] == {"otlp setup": 1.0}
    assert f"pip install 'otel-jobtrack[{extra}]'" in _one_line(proc)
