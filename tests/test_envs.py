"""envs/*.yaml (for --sdm conda) must pin the same Python packages as pyproject.toml."""

import re
import tomllib

import yaml


def _pins(requirements):
    pins = {}
    for req in requirements:
        name, _, version = req.partition("==")
        assert version, f"{req!r} is not pinned with =="
        pins[re.sub(r"[-_.]+", "-", name.lower())] = version
    return pins


def test_conda_envs_match_pyproject_pins(repo):
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    pinned = _pins(project["dependencies"])
    envs = sorted((repo / "envs").glob("*.yaml"))
    assert envs, "no conda environments"
    for env in envs:
        deps = yaml.safe_load(env.read_text())["dependencies"]
        pip_section = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
        for name, version in _pins(pip_section).items():
            assert name in pinned, f"{env.name}: {name} is not a dependency in pyproject.toml"
            assert pinned[name] == version, f"{env.name}: {name}=={version}, pyproject.toml pins {pinned[name]}"


def test_every_rule_env_exists(repo):
    for smk in (repo / "workflow" / "rules").glob("*.smk"):
        for rel in re.findall(r'conda:\s*\n\s*"([^"]+)"', smk.read_text()):
            assert (smk.parent / rel).resolve().is_file(), f"{smk.name}: {rel} missing"


def test_lock_pins_the_direct_dependencies(repo):
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    lock = _pins(l for l in (repo / "requirements.lock").read_text().splitlines() if l and not l.startswith("#"))
    for name, version in _pins(project["dependencies"] + project["optional-dependencies"]["dev"]).items():
        assert lock.get(name) == version, f"requirements.lock has {name}=={lock.get(name)}, pyproject.toml {version}"
