"""What the repository itself promises: a test command never stops a process it did not start, dependency
floors sit past known advisories (for installs without the lock), and the image's base is pinned to a patch."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# package -> the first version past its known advisories
FLOORS = {
    "protobuf": (5, 29, 5),  # CVE-2025-4565: unbounded recursion in the pure-Python parser (DoS)
    "requests": (2, 32, 4),  # CVE-2024-35195 (verify=False kept on a pooled connection), CVE-2024-47081 (.netrc)
}
_STOPS_OTHERS = re.compile(r"\b(pkill|killall)\b|\bsystemctl\s+(stop|kill|restart)\b|\bservice\s+\S+\s+(stop|restart)\b"
                           r"|\bkill\s+[^\n]*\$\((pgrep|pidof)\b")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def test_no_script_stops_a_process_it_did_not_start():
    for path in sorted((ROOT / "scripts").iterdir()):
        if path.suffix in (".sh", ".py", ""):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("#", 1)[0] if path.suffix == ".sh" else line
                assert not _STOPS_OTHERS.search(code), f"{path.name}:{n}: stops processes it did not start: {line}"


def test_dependency_floors_are_past_known_advisories_and_the_lock_satisfies_them():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    floors = {}
    for dep in project["dependencies"]:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9.]+)", dep.split(";")[0].strip())
        assert m, f"every dependency has a floor: {dep}"
        floors[m.group(1).lower()] = _version(m.group(2))
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    locked = {p["name"]: _version(p["version"]) for p in lock["package"]}
    for name, fixed in FLOORS.items():
        assert floors[name] >= fixed, f"{name}>={'.'.join(map(str, floors[name]))} allows versions with advisories"
        assert locked[name] >= floors[name], f"the lock's {name} is below its floor"


def test_the_docker_base_image_is_pinned_to_a_patch_version():
    stages = [line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("FROM ")]
    assert stages and all(re.match(r"FROM python:3\.11\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?( AS \w+)?$", s)
                          for s in stages), stages
    assert len({s.split()[1] for s in stages}) == 1  # builder and runtime on the same base
