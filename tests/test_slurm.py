"""The demo workflow on a real single-node Slurm, through profiles/slurm-gpu as a user edits it.

tests/slurm/start.sh starts the cluster on loopback (partitions `testcpu`, default, and `testgpu`,
two fake GPUs); the module's finalizer stops it even when a test fails. What a user relies on:
jobs go through sbatch, rules marked `gpu=1` get a GPU in the GPU partition, the results are those
of a local run byte for byte, a wrong partition name fails fast with Slurm's message, a job killed
by the scheduler is resubmitted, and a rerun after snakemake itself died redoes only what was not
finished.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO, SNAKEFILE, demo_config, gpu_rules, require
from test_workflow import job_counts

pytestmark = pytest.mark.slow

SLURM_SCRIPTS = REPO / "tests" / "slurm"
PROFILE = REPO / "profiles" / "slurm-gpu" / "config.v8+.yaml"
CPU_PARTITION, GPU_PARTITION = "testcpu", "testgpu"  # as tests/slurm/slurm.conf.in names them
RUN_TIMEOUT_S = 1500  # the demo's data half (SLURM_LANGUAGES) through sbatch, beside the background demo run
# Compared byte for byte with a local run: every result of the per-recording and dataset stages
# (the report's HTML and SVG are left out: they are figures, not data).
COMPARED_PARTS = ("audio", "segments", "asr", "text", "aligned", "timing", "dataset")
# The languages run on Slurm: Samoan's whole results are compared between two local runs by
# test_workflow's test_two_clean_demo_runs_give_the_same_bytes; the executor's part is the same
# for every language, and each language left out spares the suite its jobs (~1.5 min).
SLURM_LANGUAGES = ["portuguese", "tuvaluan"]


GPU_RULES = gpu_rules()  # test_workflow checks that the profile sends each one to the GPU partition


def is_gpu_job(slurm_log: str) -> bool:
    return any(f"/rule_{rule}/" in slurm_log for rule in GPU_RULES)


def user_profile(folder: Path, cpu_partition: str, gpu_partition: str) -> Path:
    """profiles/slurm-gpu with only the lines its header says to edit changed, as a user would."""
    text = PROFILE.read_text()
    text, n_cpu = re.subn(r'(&cpu_partition )"[^"]*"', rf'\1"{cpu_partition}"', text)
    text, n_gpu = re.subn(r'(&gpu_partition )"[^"]*"', rf'\1"{gpu_partition}"', text)
    assert (n_cpu, n_gpu) == (1, 1), "the profile's partition lines (EDIT 1, EDIT 2) moved"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / PROFILE.name).write_text(text)
    return folder


class Cluster:
    def __init__(self, state_dir: Path, slurm_conf: str):
        self.state_dir = state_dir
        self.env = dict(os.environ, SLURM_CONF=slurm_conf)
        # Jobs call `python`: the venv's interpreter first, on the submit side and (exported) in jobs.
        self.env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), self.env.get("PATH", "")])
        self.env.pop("PYTHONPATH", None)

    def cli(self, *args: str) -> str:
        return subprocess.run(args, env=self.env, capture_output=True, text=True, check=True, timeout=30).stdout

    def queue(self) -> list[tuple[str, str, str]]:
        """(job id, state, comment) of the jobs Slurm still knows; the plugin's comment names the rule."""
        out = self.cli("squeue", "-h", "--states=all", "-o", "%i|%T|%k")
        return [tuple(line.split("|", 2)) for line in out.splitlines() if line.count("|") == 2]

    def snakemake_args(self, workdir: Path, profile: Path, config: Path) -> list[str]:
        # Test-cluster facts, not user edits: no slurmdbd (so squeue, not sacct, answers status
        # queries), quick first status check, and every job's Slurm log kept for the checks below.
        return [
            sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(workdir),
            "--profile", str(profile), "--configfile", str(config),
            "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
            "--slurm-keep-successful-logs",
        ]  # fmt: skip

    def run(self, workdir, profile, config, *targets, timeout=RUN_TIMEOUT_S) -> subprocess.CompletedProcess:
        args = self.snakemake_args(workdir, profile, config) + list(targets)
        return subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=timeout)

    def task_env(self) -> dict[str, list[dict[str, str]]]:
        """Per Slurm job id, the lines the cluster's TaskProlog wrote (partition, CUDA_VISIBLE_DEVICES)."""
        records: dict[str, list[dict[str, str]]] = {}
        for line in (self.state_dir / "log" / "task_env.log").read_text().splitlines():
            fields = dict(part.split("=", 1) for part in line.split())
            records.setdefault(fields["job"], []).append(fields)
        return records

    def completed_jobs(self) -> dict[str, dict[str, str]]:
        """Slurm's job completion records (jobcomp/filetxt), by job id."""
        jobs = {}
        for line in (self.state_dir / "log" / "jobcomp.log").read_text().splitlines():
            fields = dict(re.findall(r"(\w+)=(\S*)", line))
            jobs[fields["JobId"]] = fields
        return jobs


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    require("ffmpeg")
    if shutil.which("sbatch") is None or shutil.which("slurmctld") is None:
        pytest.skip("Slurm is not installed (scripts/install-system-deps.sh installs slurmctld, slurmd, munge)")
    state_dir = Path(os.environ.get("TALA_SLURM_DIR", "/tmp/tala-slurm"))
    env = dict(os.environ, TALA_SLURM_DIR=str(state_dir))
    started = subprocess.run(["bash", str(SLURM_SCRIPTS / "start.sh")], env=env, capture_output=True, text=True)
    try:
        if started.returncode == 2:
            pytest.skip(f"cannot host a test Slurm here: {started.stderr.strip()}")
        assert started.returncode == 0, f"tests/slurm/start.sh failed:\n{started.stdout}\n{started.stderr}"
        slurm_conf = started.stdout.strip().splitlines()[-1].removeprefix("export SLURM_CONF=")
        yield Cluster(state_dir, slurm_conf)
    finally:
        subprocess.run(["bash", str(SLURM_SCRIPTS / "stop.sh")], env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def local_run(demo_run):
    """The same demo run as the end-to-end tests' (conftest), made once per session."""
    return demo_run[0]


def _cancel_first_running(cluster: Cluster, rule: str, stop: threading.Event, cancelled: list[str]) -> None:
    """scancel the first job of `rule` seen running (what a preemption or an admin does)."""
    while not stop.is_set() and not cancelled:
        for job_id, state, comment in cluster.queue():
            if state == "RUNNING" and comment.startswith(f"rule_{rule}_"):
                cluster.cli("scancel", job_id)
                cancelled.append(job_id)
                return
        time.sleep(0.5)


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory) -> dict:
    """The demo on Slurm in two acts, in one working directory:
    1. snakemake is killed (SIGKILL, as when a login session dies) while a GPU job runs, and its
       Slurm jobs are cancelled; 2. after `--unlock`, the same command again, during which the
       scheduler kills (scancel) a running transcribe_audio job once; it must finish everything."""
    workdir = tmp_path_factory.mktemp("slurm")
    config = demo_config(workdir)
    profile = user_profile(workdir / "profile", CPU_PARTITION, GPU_PARTITION)
    # The model half (units, fine-tuning, vocoder: plain GPU / CPU rules like transcribe_audio and
    # the data half tested here) is left out: ~9 min of CPU work and Slurm job start-ups would only
    # lengthen the suite; the local demo run makes and checks it.
    omitted = ["fit_kmeans", "extract_pitch", "finetune_mms_adapter", "finetune_speechllm", "finetune_moonshine_lora"]
    args = cluster.snakemake_args(workdir, profile, config) + ["--omit-from", *omitted]
    args += ["--config", f"run_languages=[{','.join(SLURM_LANGUAGES)}]"]

    killed = subprocess.Popen(args, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first_log: list[str] = []
    log_reader = threading.Thread(target=lambda: first_log.append(killed.stdout.read()), daemon=True)
    log_reader.start()
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not any(s == "RUNNING" and c.startswith("rule_transcribe_audio_") for _, s, c in cluster.queue()):
        assert killed.poll() is None, "the run ended before any transcribe_audio job ran"
        assert time.monotonic() < deadline, "no transcribe_audio job started"
        time.sleep(0.5)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    log_reader.join(timeout=30)
    for job_id, state, _ in cluster.queue():
        if state in ("PENDING", "RUNNING"):
            cluster.cli("scancel", job_id)
    before_rerun = {p: p.stat().st_mtime_ns for p in (workdir / "results").rglob("*") if p.is_file()}
    # What a user does after a crash: snakemake's lock outlived it.
    unlock = subprocess.run(args + ["--unlock"], env=cluster.env, capture_output=True, text=True, timeout=120)
    assert unlock.returncode == 0, unlock.stderr[-3000:]

    stop, cancelled = threading.Event(), []
    watcher = threading.Thread(target=_cancel_first_running, args=(cluster, "transcribe_audio", stop, cancelled))
    watcher.start()
    started = time.monotonic()
    try:
        rerun = subprocess.run(args, env=cluster.env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    finally:
        stop.set()
        watcher.join()
    print(f"slurm rerun: {time.monotonic() - started:.0f} s")
    assert rerun.returncode == 0, f"slurm run failed:\n{rerun.stdout[-3000:]}\n{rerun.stderr[-6000:]}"
    rerun_log = rerun.stdout + rerun.stderr
    return {
        "workdir": workdir,
        "logs": "".join(first_log) + rerun_log,
        "rerun_log": rerun_log,
        "before_rerun": before_rerun,
        "cancelled": cancelled,
    }


def submitted(log: str) -> dict[str, str]:
    """Slurm job id -> the plugin's Slurm log path, for every sbatch of the run."""
    return dict(
        (m.group(1), m.group(2))
        for m in re.finditer(r"submitted with SLURM jobid (\d+) \(log: (\S+)\)", log)
    )


def test_jobs_go_through_sbatch_in_the_right_partition(cluster, slurm_run):
    jobs = submitted(slurm_run["logs"])
    assert jobs, "no job was submitted with sbatch"
    records = cluster.completed_jobs()
    for job_id, slurm_log in jobs.items():
        assert job_id in records, f"Slurm has no record of job {job_id} ({slurm_log})"
        want = GPU_PARTITION if is_gpu_job(slurm_log) else CPU_PARTITION
        assert records[job_id]["Partition"] == want, (slurm_log, records[job_id])
    # The small per-recording CPU steps ran as group jobs, not one Slurm job each.
    folders = {Path(p).parent.name for p in jobs.values()} | {Path(p).parent.parent.name for p in jobs.values()}
    assert any(f.startswith("group_audio_") for f in folders) and any(f.startswith("group_text_") for f in folders)
    assert not folders & {"rule_convert_audio", "rule_segment_audio", "rule_read_text", "rule_align_transcript"}


def test_gpu_rules_get_a_gpu_and_cpu_rules_none(cluster, slurm_run):
    env = cluster.task_env()
    jobs = submitted(slurm_run["logs"])
    gpu_jobs = [j for j, p in jobs.items() if is_gpu_job(p)]
    cpu_jobs = [j for j, p in jobs.items() if not is_gpu_job(p)]
    assert gpu_jobs and cpu_jobs
    records = cluster.completed_jobs()
    device = {}
    for job_id in gpu_jobs:
        if records.get(job_id, {}).get("JobState") != "COMPLETED":  # cancelled on purpose, maybe before it started
            continue
        # The batch step and the srun step that runs the rule both see the one GPU allocated.
        assert env.get(job_id), f"job {job_id} left no task record"
        devices = {r["cuda_visible_devices"] for r in env[job_id]}
        assert len(devices) == 1 and devices <= {"0", "1"}, env[job_id]  # the node's two GPUs
        device[job_id] = devices.pop()
    # GPU jobs ran side by side, each on its own GPU (times in whole seconds: touching is not overlapping).
    span = {j: (records[j]["StartTime"], records[j]["EndTime"]) for j in device}
    overlapping = [(a, b) for a in device for b in device if a < b and span[a][0] < span[b][1] and span[b][0] < span[a][1]]
    assert overlapping, "no two GPU jobs ran at once on the node's two GPUs"
    assert all(device[a] != device[b] for a, b in overlapping), [(a, b, device[a], device[b]) for a, b in overlapping]
    for job_id in cpu_jobs:
        assert all(r["cuda_visible_devices"] == "unset" for r in env.get(job_id, [])), env.get(job_id)


def test_a_job_killed_by_the_scheduler_is_resubmitted(slurm_run):
    log, cancelled = slurm_run["rerun_log"], slurm_run["cancelled"]
    assert cancelled, "no transcribe_audio job was seen running to cancel"
    assert f"SLURM-job '{cancelled[0]}' failed, SLURM status is: 'CANCELLED'" in log
    slurm_log = Path(submitted(log)[cancelled[0]])
    # Same rule and wildcards: a later Slurm job in the same log folder.
    resubmits = [j for j, p in submitted(log).items() if Path(p).parent == slurm_log.parent and j != cancelled[0]]
    assert resubmits, f"job {cancelled[0]} ({slurm_log.parent.name}) was not resubmitted"


def test_rerun_after_snakemake_died_redoes_only_unfinished_work(slurm_run):
    """What the kill interrupted is redone, what had finished is not. How far the first act got
    depends on the machine's speed (transcription may start while other chapters still convert),
    so the check is per file: a rerun job for every result that was missing or rewritten, none for
    the rest."""
    workdir, before_rerun = slurm_run["workdir"], slurm_run["before_rerun"]
    table = slurm_run["rerun_log"].split("Job stats:", 1)[1]
    counts = job_counts(table[: table.index("\ntotal") + 1])
    kept = {}
    for rule, pattern in (("convert_audio", "*/audio/*.wav"), ("transcribe_audio", "*/asr/*.json")):
        results = sorted((workdir / "results").glob(pattern))
        kept[rule] = [p for p in results if p in before_rerun and p.stat().st_mtime_ns == before_rerun[p]]
        assert counts.get(rule, 0) == len(results) - len(kept[rule]), (rule, counts, len(results), len(kept[rule]))
    converted = [p for p in before_rerun if p.suffix == ".wav" and p.parent.name == "audio"]
    assert converted, "nothing was converted before the kill"
    assert kept["convert_audio"], "finished conversions were redone"
    assert 0 < counts["transcribe_audio"], "the transcription the kill interrupted was not redone"


def test_results_equal_a_local_run_byte_for_byte(slurm_run, local_run):
    workdir = slurm_run["workdir"]
    compared = 0
    assert sorted(p.name for p in (workdir / "results").iterdir()) == sorted(SLURM_LANGUAGES)
    for lang in SLURM_LANGUAGES:
        lang_dir = local_run / "results" / lang
        for part in COMPARED_PARTS:
            for local_file in sorted((lang_dir / part).rglob("*")):
                if local_file.is_file():
                    rel = local_file.relative_to(local_run)
                    slurm_file = workdir / rel
                    assert slurm_file.is_file(), f"{rel} missing from the Slurm run"
                    assert local_file.read_bytes() == slurm_file.read_bytes(), f"{rel} differs from the local run"
                    compared += 1
    assert compared > 50


def test_a_gpu_partition_that_does_not_exist_fails_fast_with_slurms_message(cluster, tmp_path):
    profile = user_profile(tmp_path / "profile", CPU_PARTITION, "no_such_partition")
    started = time.monotonic()
    proc = cluster.run(tmp_path, profile, demo_config(tmp_path), "results/samoan/asr/PSA_121.json", timeout=300)
    assert proc.returncode != 0
    assert time.monotonic() - started < 300
    out = proc.stdout + proc.stderr
    assert "sbatch: error: Batch job submission failed: Invalid partition name specified" in out, out[-3000:]
    assert not (tmp_path / "results/samoan/asr/PSA_121.json").exists()
    assert not [job for job in cluster.queue() if job[1] in ("PENDING", "RUNNING")]


def test_a_cpu_partition_that_does_not_exist_fails_fast(cluster, tmp_path):
    """Group jobs fail at once too; Snakemake 9.27 does not show the plugin's sbatch message for
    a group job ("message: None"), so only the failure and the missing outputs are checked."""
    profile = user_profile(tmp_path / "profile", "no_such_partition", GPU_PARTITION)
    proc = cluster.run(tmp_path, profile, demo_config(tmp_path), "results/samoan/segments/PSA_121.tsv", timeout=120)
    assert proc.returncode != 0
    assert "Error in rule convert_audio" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()
    assert not [job for job in cluster.queue() if job[1] in ("PENDING", "RUNNING")]
