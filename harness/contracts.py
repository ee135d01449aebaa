"""The contract of every plugin family: what the pipeline calls on a compressor, a server, an evaluator, a
distiller, an executor and a model source. harness/registry.py checks a plugin against its family's
contract when it loads it, so a plugin that lacks a member fails at `registry.get` with the names of what
is missing, not in the middle of a cell with an AttributeError.

The contracts are Protocols (structural: an out-of-tree plugin need not inherit anything from dqbench);
the in-tree base classes (harness/compress/base.Compressor, harness/serve/base.EngineServer,
harness/distill/base.Distiller) are implementations of them. Every member is class-level (a method, a
property or a ClassVar), so it can be checked on the class before an instance exists.

No heavy imports: the planner and the advisor's estimates load plugins through the registry.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from harness.distill.base import Student
    from harness.distill.data import DataFingerprint, TrainingData
    from harness.models.arch import ArchInfo
    from harness.models.fingerprint import ModelFingerprint
    from harness.plan.cell import CellPlan
    from harness.progress import Progress
    from harness.result import Artefact, CellResult, Quality
    from harness.serve.base import ServerHandle
    from harness.serve.scoring import Scoring
    from harness.settings import Settings
    from harness.spec.evaluation import Evaluation
    from harness.spec.serving import Serving
    from harness.spec.sources import ModelSource
    from harness.spec.students import DistillSpec
    from harness.workspace import CellPaths


class CompressorContract(Protocol):
    """A method (`methods.<name>.kind`): makes the artefact a cell serves. Constructed with no arguments."""

    kind: ClassVar[str]
    precisions: ClassVar[tuple[str, ...]]
    needs_gpu: ClassVar[bool]

    def __init__(self) -> None: ...

    engines: ClassVar[tuple[str, ...]]  # the serving engines that load its output, preferred first
    honours_compute_dtype: ClassVar[bool]

    def scheme(self, cell: CellPlan) -> str: ...
    def missing_packages(self) -> str | None: ...
    def plan_problems(self, cell: CellPlan, arch: ArchInfo | None) -> list[str]: ...
    def compress(self, cell: CellPlan, source: Path | str, paths: CellPaths, settings: Settings) -> Artefact: ...


class ServerContract(Protocol):
    """An engine (`serving.kind`): `Server(spec, python, device)`. `start` returns a running ServerHandle;
    `command`/`env` say how it is started, `inspect` what it loaded, `scoring` how lm-eval and the shift
    score the cell (through this server or in-process), `request_extras`/`http_keepalive` how the load
    generator talks to it, `starts_slowly` whether the evaluate worker is started beside its start-up (else
    beside the artefact's making), `evaluate_env` the worker environment `scoring` will ask for, before any start."""

    engine: ClassVar[str]
    request_extras: ClassVar[dict[str, Any]]
    http_keepalive: ClassVar[bool]
    starts_slowly: ClassVar[bool]

    def __init__(self, spec: Serving, python: str, device: str) -> None: ...

    def command(self, artefact: Artefact, port: int, served_name: str, trust_remote_code: bool) -> list[str]: ...
    def env(self) -> dict[str, str]: ...
    def start(
        self, artefact: Artefact, served_name: str, log_path: Path, trust_remote_code: bool = False
    ) -> ServerHandle: ...
    def inspect(self, handle: ServerHandle, artefact: Artefact) -> dict[str, Any]: ...
    def scoring(self, handle: ServerHandle, artefact: Artefact) -> Scoring: ...
    def evaluate_env(self) -> dict[str, str]: ...


class EvaluatorContract(Protocol):
    """An evaluation harness (`evaluation.kind`): `Evaluator(spec, settings)`. `evaluate` returns the
    `quality` block (harness/result.Quality)."""

    kind: ClassVar[str]

    def __init__(self, spec: Evaluation, settings: Settings) -> None: ...

    def plan_problems(self) -> list[str]: ...
    def prepare(self, log: Path) -> None: ...
    # `sequential`: the matrix's `decide:` question for this cell (harness/decide/question.SequentialSpec)
    def evaluate(self, scoring: Scoring, workdir: Path, log: Path, sequential: Any = None) -> Quality: ...
    # start the worker `evaluate` will use, before its job is known (harness/worker_ahead.py; may do nothing);
    # given the `workdir` and `sequential` that `evaluate` will get, it may also build what they ask for; `env`:
    # what the scoring's environment will be (ServerContract.evaluate_env)
    def start_ahead(
        self, log: Path, workdir: Path, sequential: Any = None, env: dict[str, str] | None = None
    ) -> None: ...


class DistillerContract(Protocol):
    """A student recipe (`students.<name>.kind`): `Distiller(spec)`; `build` returns the student
    (harness/distill/base.Student), trained or found in the student cache."""

    kind: ClassVar[str]
    trains: ClassVar[bool]
    needs_generations: ClassVar[bool]
    same_vocab: ClassVar[bool]

    def __init__(self, spec: DistillSpec) -> None: ...

    def plan_problems(self, cell: CellPlan, teacher: ArchInfo | None, student: ArchInfo | None) -> list[str]: ...
    # teacher_fp: the teacher source's fingerprint (ModelSourceContract.fingerprint), hashed into the keys
    def generations_path(self, teacher_fp: dict[str, Any], data_fp: DataFingerprint, settings: Settings) -> Path: ...
    def is_built(self, teacher_fp: dict[str, Any], data: TrainingData, settings: Settings) -> bool: ...
    def build(
        self,
        cell: CellPlan,
        teacher_dir: str,
        teacher_fp: dict[str, Any],
        data: TrainingData,
        settings: Settings,
        log: Path,
        generations: Path | None,
    ) -> Student: ...


class ExecutorContract(Protocol):
    """Where cells run (`--executor`): `Executor(settings, **options)`. `run` hands every cell's result to
    `finished` (the runner stores it); it never stores anything itself."""

    def __init__(self, settings: Settings, **options: Any) -> None: ...

    def preflight(self, cells: list[CellPlan]) -> None: ...
    def run(
        self, cells: list[CellPlan], finished: Callable[[CellPlan, CellResult], None], progress: Progress
    ) -> None: ...


class ModelSourceContract(Protocol):
    """Where a checkpoint comes from (`models[].source.kind`): `Source(spec, settings)`. `fingerprint` says what
    was loaded (harness/models/fingerprint.py: its dump is the result's `model` block and part of cache keys)."""

    def __init__(self, spec: ModelSource, settings: Settings) -> None: ...

    def available(self) -> str | None: ...  # None, or why the model cannot be had (offline, no folder)
    def arch(self) -> ArchInfo | None: ...
    def prepare(self, log: Path) -> None: ...
    def resolve(self) -> str: ...  # a folder or a hub id, what the engines and workers load
    def fingerprint(self) -> ModelFingerprint: ...


_PROTOCOL_BASES = {"Protocol", "Generic", "object"}


def members(contract: type) -> dict[str, bool]:
    """The members a contract declares: name -> whether it must be callable (a method)."""
    out: dict[str, bool] = {}
    for klass in reversed(contract.__mro__):
        if klass.__name__ in _PROTOCOL_BASES:
            continue
        for name in getattr(klass, "__annotations__", {}):
            out.setdefault(name, False)
        for name, value in vars(klass).items():
            if not name.startswith("_") and (inspect.isfunction(value) or isinstance(value, property)):
                out[name] = inspect.isfunction(value)
    return out


def contract_problems(plugin: object, contract: type) -> list[str]:
    """What `plugin` (a class, or any factory object) lacks of `contract`: missing members, members that
    should be methods and are not, abstract methods left unimplemented. Empty when it meets it."""
    problems = []
    for name, method in members(contract).items():
        if not hasattr(plugin, name):
            problems.append(f"missing {name}")
        elif method and not callable(getattr(plugin, name)):
            problems.append(f"{name} is not a method")
    abstract = sorted(getattr(plugin, "__abstractmethods__", ()) or ())
    if abstract:
        problems.append(f"abstract, not implemented: {', '.join(abstract)}")
    return problems
