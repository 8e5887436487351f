"""The package mirrors the workflow: a rule's step lives in the subpackage named like its .smk file,
and every step answers ``python -m tala.<stage>.<step> --help``."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import REPO

RULES = REPO / "workflow" / "rules"
# A rule whose step belongs to another stage, and why.
ELSEWHERE = {
    "proof_verses": "align",  # the proofing table is an export of the alignment, shown in the report
}


def rule_steps() -> dict[str, tuple[str, str]]:
    """{rule: (stage of its .smk file, the tala module its shell runs)}."""
    found = {}
    for smk in sorted(RULES.glob("*.smk")):
        for block in re.split(r"^(?=rule |checkpoint )", smk.read_text(encoding="utf-8"), flags=re.M):
            name = re.match(r"(?:rule|checkpoint) (\w+):", block)
            module = re.search(r"python -m (tala\.[\w.]+)", block)
            if name and module:
                found[name.group(1)] = (smk.stem, module.group(1))
    return found


def test_each_rule_runs_a_step_of_its_own_stage():
    steps = rule_steps()
    assert len(steps) >= 15, steps
    wrong = {rule: (stage, module) for rule, (stage, module) in steps.items()
             if module.split(".")[1] != ELSEWHERE.get(rule, stage)}
    assert not wrong, f"rules whose step is not in tala.<their stage>: {wrong}"


def test_every_step_has_a_command_line():
    modules = sorted({module for _, module in rule_steps().values()})
    modules += ["tala.finetune.train_ctc", "tala.config"]
    probe = (
        "import importlib, sys\n"
        "for name in sys.argv[1:]:\n"
        "    module = importlib.import_module(name)\n"
        "    try:\n"
        "        module.main(['--help'])\n"
        "    except SystemExit as exit:\n"
        "        assert exit.code == 0, name\n"
        "    print('ok', name)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe, *modules], capture_output=True, text=True, cwd=REPO,
                         env={"PYTHONPATH": str(REPO / "scripts"), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert [line for line in out.stdout.splitlines() if line.startswith("ok ")] == [f"ok {m}" for m in modules]
