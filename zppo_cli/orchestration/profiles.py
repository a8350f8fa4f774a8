"""Cluster profiles (YAML in `slurm/`) -> submitit Slurm parameters.

A job's Slurm parameters are three layers, later wins:

    slurm/scales.yaml[<scale>]   what the preset needs (nodes, GPUs, time)
    slurm/<profile>.yaml         the cluster: partition, account, qos, GPUs per node, setup lines ...
    --slurm key=value            one-off overrides

Keys are the friendly names below plus any parameter of submitit's Slurm executor (`exclusive`, `gres`,
`mail_user` ...). Anything else is rejected with the list of valid keys. `resolve()` returns a `SlurmParams`:
the sbatch parameters submitit takes (`executor.update_parameters(**p.sbatch)`), the executor settings
(`max_num_timeout`, `python`) and the generated torch.distributed set-up for multi-task jobs.

Teacher-server layout (the paper: 6 student + 2 teacher GPUs per node): with `teacher_gpus_per_node: T` in the
profile and a run that uses a teacher (`resolve(..., teacher_serve=...)`), each node starts one vLLM server for
the teacher on its last T GPUs (tensor parallel T, 127.0.0.1:teacher_port), the job waits until every node's
server answers, and the student tasks (one per remaining GPU, LOCAL_RANK 0..G-T-1) reach their node's server at
`SlurmParams.teacher_url`. Shown by the dry run; not run here (no GPU cluster). Sites that constrain GPU devices
per job step (cgroup ConstrainDevices) may need a `--gres` on the server step's srun line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from zppo_core.config import ConfigError

REPO_SLURM_DIR = Path(__file__).resolve().parents[2] / "slurm"
SCALES_FILE = "scales.yaml"

# friendly keys: name -> (type, help)
FRIENDLY: dict[str, tuple[type | tuple[type, ...], str]] = {
    "description": (str, "one line shown by `zppo jobs profiles`"),
    "time_min": (int, "time limit in minutes (sbatch --time)"),
    "mem_gb": ((int, float), "memory per node in GB (sbatch --mem)"),
    "tasks_per_node": (int, "tasks per node (default: gpus_per_node, else 1): one process per GPU"),
    "max_requeues": (int, "how many timeouts/preemptions are requeued (submitit max_num_timeout)"),
    "python": (str, "command that runs python on the nodes (default: this interpreter)"),
    "teacher_gpus_per_node": (int, "GPUs per node for a served teacher (the paper: 2 of 8); runs whose method uses "
                              "a teacher start one `zppo serve teacher` per node on them, students use the rest"),
    "teacher_port": (int, "port of the per-node teacher server (default 8000)"),
}
# submitit's own names that the friendly keys replace (rejected, with a pointer to the friendly key)
REPLACED = {"time": "time_min", "mem": "mem_gb", "ntasks_per_node": "tasks_per_node", "job_name": "--name",
            "num_gpus": "gpus_per_node"}
TYPES: dict[str, type | tuple[type, ...]] = {
    "nodes": int, "gpus_per_node": int, "cpus_per_task": int, "cpus_per_gpu": int, "gpus_per_task": int,
    "signal_delay_s": int, "array_parallelism": int, "setup": list, "teardown": list, "srun_args": list,
    "additional_parameters": dict, "use_srun": bool, "stderr_to_stdout": bool, "exclusive": (bool, str),
}


def _submitit_keys() -> dict[str, Any]:
    from submitit.slurm.slurm import _get_default_parameters

    return dict(_get_default_parameters())


def valid_keys() -> list[str]:
    native = [k for k in _submitit_keys() if k not in REPLACED]
    return sorted(set(native) | set(FRIENDLY))


def search_dirs() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get("ZPPO_SLURM_PROFILES", "").split(os.pathsep) if p]
    dirs += [Path.cwd() / "slurm", REPO_SLURM_DIR]
    out: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    return out


def list_profiles() -> dict[str, Path]:
    """Profile name -> file (first hit along the search path)."""
    out: dict[str, Path] = {}
    for d in search_dirs():
        for f in sorted(d.glob("*.yaml")):
            if f.name != SCALES_FILE and f.stem not in out:
                out[f.stem] = f
    return out


def default_profile() -> str:
    return os.environ.get("ZPPO_SLURM_PROFILE", "local")


def _read_yaml(path: Path, what: str) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{what} {path}:{where} is not valid YAML; fix the file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must be a mapping of key: value; fix the file")
    return data


def load_profile(name: str) -> tuple[dict[str, Any], Path]:
    """A profile by name (or a path to a YAML file)."""
    p = Path(name)
    if name.endswith((".yaml", ".yml")) or os.sep in name:
        if not p.is_file():
            raise ConfigError(f"--profile {name}: no such file; pass a profile name ({_names()}) or a YAML file")
        path = p
    else:
        profiles = list_profiles()
        if name not in profiles:
            raise ConfigError(f"unknown Slurm profile '{name}'; valid profiles: {_names()} "
                              f"(YAML files in {', '.join(str(d) for d in search_dirs()) or 'slurm/'})")
        path = profiles[name]
    data = _read_yaml(path, "Slurm profile")
    check_keys(data, f"profile {path}")
    return data, path


def _names() -> str:
    return ", ".join(list_profiles()) or "(none found)"


def scale_defaults(scale: str | None) -> dict[str, Any]:
    if scale is None:
        return {}
    for d in search_dirs():
        f = d / SCALES_FILE
        if f.is_file():
            data = _read_yaml(f, "Slurm scale defaults")
            entry = data.get(scale) or {}
            check_keys(entry, f"{f} [{scale}]")
            return dict(entry)
    return {}


def check_keys(data: dict[str, Any], source: str) -> None:
    for key, value in data.items():
        if key in REPLACED:
            raise ConfigError(f"Slurm key '{key}' ({source}): write {REPLACED[key]} instead")
        valid = valid_keys()
        if key not in valid:
            raise ConfigError(f"unknown Slurm key '{key}' ({source}); valid keys: {', '.join(valid)}")
        want = FRIENDLY[key][0] if key in FRIENDLY else TYPES.get(key, str)
        if value is None:
            continue
        ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
        if want is list:
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        if not ok:
            names = want.__name__ if isinstance(want, type) else " or ".join(t.__name__ for t in want)
            shown = "list of strings" if want is list else names
            raise ConfigError(f"Slurm key '{key}' ({source}) must be a {shown}, got {value!r}; "
                              f"fix: --slurm {key}=<{shown}>")


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """['time_min=5', 'setup=[a, b]'] -> dict; values parse as YAML (the config's `--set` parser, flat keys)."""
    from zppo_core.config.overrides import OverrideError, parse_overrides as parse

    try:
        out = parse(items, example="--slurm time_min=60", dotted=False,
                    numeric=lambda key: key in FRIENDLY and FRIENDLY[key][0] != str)
    except OverrideError as err:
        raise ConfigError(f"--slurm {err}") from None
    check_keys(out, "--slurm")
    return out


@dataclass
class SlurmParams:
    """Everything submitit needs for one job (or job array)."""

    sbatch: dict[str, Any]            # SlurmExecutor.update_parameters(**sbatch)
    max_num_timeout: int = 3
    python: str | None = None
    world_size: int = 1
    profile: str = ""
    teacher_url: str | None = None  # the node-local served teacher of the teacher-server layout (None: none)
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)  # where each value came from

    def shown(self) -> dict[str, Any]:
        """The parameters as the dry run prints them."""
        out = {"executor": {"max_num_timeout": self.max_num_timeout, "python": self.python or "(this interpreter)"},
               "sbatch": dict(self.sbatch)}
        return out


def distributed_setup(nodes: int, tasks_per_node: int) -> list[str]:
    """sbatch lines giving every task the torch.distributed rendezvous (RANK/LOCAL_RANK are set per task)."""
    world = nodes * tasks_per_node
    return [
        f"# torch.distributed: {nodes} node(s) x {tasks_per_node} task(s); each task sets RANK=SLURM_PROCID and "
        "LOCAL_RANK=SLURM_LOCALID",
        'export MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"',
        "export MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000))",
        f"export WORLD_SIZE={world}",
        f"export ZPPO_NODES={nodes} ZPPO_TASKS_PER_NODE={tasks_per_node}",
    ]


def teacher_server_setup(nodes: int, gpus: int, teacher_gpus: int, port: int, serve: str) -> list[str]:
    """sbatch lines: one teacher server per node on its last `teacher_gpus` GPUs, then wait until all answer."""
    first = gpus - teacher_gpus
    devices = ",".join(str(i) for i in range(first, gpus))
    url = f"http://127.0.0.1:{port}/v1"
    return [
        f"# teacher servers (the paper's layout): one per node on GPUs {devices} (tensor parallel {teacher_gpus}); "
        f"students use GPUs 0-{first - 1}",
        f"srun --overlap --nodes={nodes} --ntasks-per-node=1 --kill-on-bad-exit=0 bash -c "
        f"'CUDA_VISIBLE_DEVICES={devices} exec {serve} --host 127.0.0.1 --port {port} --tensor-parallel-size "
        f"{teacher_gpus} > teacher-$SLURM_JOB_ID-$(hostname).log 2>&1' &",
        f"srun --overlap --nodes={nodes} --ntasks-per-node=1 bash -c 'for i in $(seq 720); do curl -sf "
        f"{url}/models >/dev/null && exit 0; sleep 5; done; exit 1' || "
        "{ echo 'teacher servers did not answer within 60 min; see teacher-*.log' >&2; exit 1; }",
    ]


def resolve(profile: str | None = None, scale: str | None = None, overrides: Iterable[str] | dict = (),
            name: str = "zppo", teacher_serve: str | None = None) -> SlurmParams:
    """scale defaults < profile < overrides -> submitit parameters (validated, nothing submitted).
    `teacher_serve`: the command that serves this run's teacher (`zppo serve teacher --config ...`); with it, a
    profile's `teacher_gpus_per_node` turns on the teacher-server layout (module docstring)."""
    prof_name = profile or default_profile()
    prof, prof_path = load_profile(prof_name)
    scale_layer = scale_defaults(scale)
    over = dict(overrides) if isinstance(overrides, dict) else parse_overrides(overrides)
    if isinstance(overrides, dict):
        check_keys(over, "overrides")
    merged: dict[str, Any] = {}
    for layer in (scale_layer, prof, over):
        merged.update({k: v for k, v in layer.items()})
    merged.pop("description", None)
    max_requeues = merged.pop("max_requeues", 3)
    python = merged.pop("python", None)
    time_min = merged.pop("time_min", None)
    mem_gb = merged.pop("mem_gb", None)
    gpus = merged.get("gpus_per_node") or 0
    nodes = int(merged.get("nodes") or 1)
    teacher_gpus = int(merged.pop("teacher_gpus_per_node", None) or 0)
    teacher_port = int(merged.pop("teacher_port", None) or 8000)
    tasks = merged.pop("tasks_per_node", None)
    serve_teacher = bool(teacher_serve and teacher_gpus)
    if serve_teacher and teacher_gpus >= gpus:
        raise ConfigError(f"Slurm key 'teacher_gpus_per_node' ({teacher_gpus}) must be below gpus_per_node ({gpus}) "
                          "so students keep GPUs; fix: --slurm teacher_gpus_per_node=<n>")
    student_gpus = gpus - teacher_gpus if serve_teacher else gpus
    tasks = int(tasks) if tasks else (student_gpus if student_gpus else 1)
    if serve_teacher and tasks > student_gpus:
        raise ConfigError(f"tasks_per_node={tasks} plus teacher_gpus_per_node={teacher_gpus} exceed gpus_per_node="
                          f"{gpus}; fix: --slurm tasks_per_node={student_gpus}")
    for key, minimum in (("nodes", 1), ("time_min", 1), ("max_requeues", 0)):
        value = {"nodes": nodes, "time_min": time_min if time_min is not None else 1,
                 "max_requeues": max_requeues}[key]
        if value < minimum:
            raise ConfigError(f"Slurm key '{key}' must be >= {minimum} (got {value}); fix: --slurm {key}=<n>")
    sbatch: dict[str, Any] = {k: v for k, v in merged.items() if v is not None}
    if not gpus:
        sbatch.pop("gpus_per_node", None)
    sbatch["nodes"] = nodes
    sbatch["ntasks_per_node"] = tasks
    sbatch["job_name"] = name
    if time_min is not None:
        sbatch["time"] = int(time_min)
    if mem_gb is not None:
        from submitit.slurm.slurm import _convert_mem

        sbatch["mem"] = _convert_mem(float(mem_gb))
    world = nodes * tasks
    setup = list(sbatch.pop("setup", None) or [])
    if serve_teacher:
        setup += teacher_server_setup(nodes, gpus, teacher_gpus, teacher_port, str(teacher_serve))
    if world > 1:
        setup += distributed_setup(nodes, tasks)
    if setup:
        sbatch["setup"] = setup
    return SlurmParams(sbatch=sbatch, max_num_timeout=int(max_requeues), python=python, world_size=world,
                       profile=str(prof_path), layers={"scale": scale_layer, "profile": prof, "overrides": over},
                       teacher_url=f"http://127.0.0.1:{teacher_port}/v1" if serve_teacher else None)
