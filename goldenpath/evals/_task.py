"""Tasks: a dataset, a Jinja2 prompt template, a target (see ``_targets``), sampling parameters and scorers.

A task is defined in YAML (``load_task``; ``builtin:NAME`` names a suite shipped in
``goldenpath/evals/suites``) or in Python by a factory registered with ``@task`` (in the spirit of
inspect_ai). Its ``version`` hashes what decides an item's result (templates, target,
sampling parameters, scorers) together with the dataset's content version; the runner's cache is
keyed by it, so changing any of these reruns the items and nothing else does.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import jinja2
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

import goldenpath.evals._judge  # noqa: F401  # registers the llm_judge scorer
from goldenpath.config import read_yaml
from goldenpath.evals._datasets import (
    Dataset,
    Sample,
    load_dataset,
    load_deepset_injections,
    load_jackhhao_jailbreaks,
    load_prompt_injection,
    load_scifact,
    load_squad_v2,
)
from goldenpath.evals._results import EvalInputError
from goldenpath.evals._scorers import Scored, Scorer, ScorerError, Scores, create_scorer, scorer_takes
from goldenpath.evals._targets import TARGET_TAGS, ChatFn, InProcessTarget, Target

BUILTIN_PREFIX = "builtin:"
SUITES_DIR = Path(__file__).parent / "suites"

DATASET_LOADERS: dict[str, Callable[[], Dataset]] = {
    "squad_v2": load_squad_v2,
    "scifact": load_scifact,
    "deepset_injections": load_deepset_injections,
    "jackhhao_jailbreaks": load_jackhhao_jailbreaks,
    "prompt_injection": load_prompt_injection,
    "prompt_injection_heldout": lambda: load_prompt_injection(split="guard-validation"),
}
"""The built-in dataset names a task may give instead of a file path."""

_ENV = SandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
_TaskFactory = TypeVar("_TaskFactory", bound=Callable[..., "Task"])
_REGISTRY: dict[str, Callable[..., Task]] = {}


class TaskError(EvalInputError):
    """A task cannot be loaded or used; the message names the file (or task), the field and the reason."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _compile(source: str) -> jinja2.Template:
    try:
        return _ENV.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"template syntax error on line {exc.lineno}: {exc.message}") from None


class MessageTemplate(_Strict):
    """One chat message whose ``content`` is a Jinja2 template."""

    role: Literal["system", "developer", "user", "assistant"]
    content: str = Field(min_length=1)

    @field_validator("content")
    @classmethod
    def _compiles(cls, value: str) -> str:
        _compile(value)
        return value


class Sampling(_Strict):
    """Sampling parameters sent with every request. With ``seed``, epoch e is sent seed + e."""

    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, gt=0)
    seed: int | None = None

    def request_params(self, epoch: int) -> dict[str, Any]:
        params: dict[str, Any] = {"temperature": self.temperature}
        if self.max_tokens is not None:
            params["max_tokens"] = self.max_tokens
        if self.seed is not None:
            params["seed"] = self.seed + epoch
        return params


class ScorerSpec(_Strict):
    """A registered scorer, its parameters, and an optional prefix prepended to each of its metric names."""

    name: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    prefix: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _buildable(self) -> ScorerSpec:
        try:
            create_scorer(self.name, **self.params)
        except ScorerError as exc:
            raise ValueError(str(exc)) from None
        return self


class Task(_Strict):
    """An evaluation task. Exactly one of ``prompt`` and ``messages``, or neither when every sample's
    input is already a prompt text or a list of chat messages.

    Templates see the sample's input fields by name (when the input is an object of fields) and
    ``sample`` (``sample.id``, ``sample.input``, ``sample.metadata``); an undefined name is an error.
    """

    name: str = Field(min_length=1)
    dataset: str | Dataset = Field(
        description="A .jsonl or .csv path (relative to the task file), a built-in loader name, or a Dataset."
    )
    limit: int | None = Field(default=None, gt=0, description="Use only the dataset's first `limit` samples.")
    prompt: str | None = Field(default=None, min_length=1, description="Jinja2 template of the user message.")
    messages: tuple[MessageTemplate, ...] | None = Field(default=None, min_length=1)
    target: Target = Field(
        description="What answers the items: a gateway model, in process or over HTTP, a collection or a detector."
    )
    sampling: Sampling = Field(default_factory=Sampling)
    scorers: tuple[ScorerSpec, ...] = Field(min_length=1)
    epochs: int = Field(default=1, ge=1, le=1000, description="How many times each sample is run.")
    max_concurrency: int = Field(default=8, ge=1, le=1024)
    base_dir: Path | None = Field(default=None, exclude=True, description="Where relative dataset paths start.")

    @field_validator("prompt")
    @classmethod
    def _prompt_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            _compile(value)
        return value

    @field_validator("dataset")
    @classmethod
    def _dataset_reference(cls, value: str | Dataset) -> str | Dataset:
        is_file = isinstance(value, str) and Path(value).suffix.lower() in (".jsonl", ".csv")
        if isinstance(value, str) and value not in DATASET_LOADERS and not is_file:
            raise ValueError(
                f"{value!r} is neither a .jsonl or .csv path nor a built-in dataset ({', '.join(DATASET_LOADERS)})"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Task:
        if self.prompt is not None and self.messages is not None:
            raise ValueError("give prompt or messages, not both")
        labels: dict[str, int] = {}
        for index, spec in enumerate(self.scorers):
            label = spec.prefix or spec.name
            if label in labels:
                raise ValueError(
                    f"scorers[{index}] and scorers[{labels[label]}] are both {label!r}: give one a distinct prefix"
                )
            labels[label] = index
        return self

    # --- identity ------------------------------------------------------------------------------------

    @property
    def definition_hash(self) -> str:
        """sha256 of what decides an item's result: templates, target, sampling and scorers (not the name,
        dataset, limit, epochs or concurrency: the dataset enters ``version`` through its content)."""
        definition = {
            "prompt": self.prompt,
            "messages": None if self.messages is None else [m.model_dump() for m in self.messages],
            "target": self.target.model_dump(),
            "sampling": self.sampling.model_dump(),
            "scorers": [s.model_dump() for s in self.scorers],
        }
        text = json.dumps(definition, sort_keys=True, separators=(",", ":"), default=_stable_repr)
        return hashlib.sha256(text.encode()).hexdigest()

    def version(self, dataset: Dataset) -> str:
        """The task version for this dataset: the definition hash joined with the dataset's version."""
        return hashlib.sha256(f"{self.definition_hash}:{dataset.version}".encode()).hexdigest()

    # --- use -----------------------------------------------------------------------------------------

    def load_dataset(self) -> Dataset:
        """The task's samples: the file or built-in dataset, cut to ``limit``."""
        if isinstance(self.dataset, Dataset):
            dataset = self.dataset
        elif self.dataset in DATASET_LOADERS:
            dataset = DATASET_LOADERS[self.dataset]()
        else:
            path = Path(self.dataset)
            dataset = load_dataset(path if path.is_absolute() or self.base_dir is None else self.base_dir / path)
        if self.limit is not None and self.limit < len(dataset):
            dataset = Dataset(name=dataset.name, samples=dataset.samples[: self.limit], split=dataset.split)
        return dataset

    def build_scorers(self, judge_chat: Callable[[str | None], ChatFn] | None = None) -> dict[str, Scorer]:
        """The scorers by label (prefix or name); a prefixed scorer's metrics carry its prefix.

        A scorer whose factory takes ``chat`` (the LLM judge) gets ``judge_chat(its base_url param)``:
        the gateway it calls.
        """
        built: dict[str, Scorer] = {}
        for spec in self.scorers:
            params = dict(spec.params)
            if judge_chat is not None and scorer_takes(spec.name, "chat") and "chat" not in params:
                params["chat"] = judge_chat(params.get("base_url"))
            made = create_scorer(spec.name, **params)
            built[spec.prefix or spec.name] = made if spec.prefix is None else _prefixed(made, spec.prefix)
        return built

    def gateway_aliases(self) -> set[str]:
        """The model aliases this task calls on its own gateway: the target's and its judges' (those
        without a ``base_url`` of their own); an in-process gateway serves just these."""
        aliases = {self.target.model} if isinstance(self.target, InProcessTarget) else set()
        for spec in self.scorers:
            model = spec.params.get("model")
            if scorer_takes(spec.name, "chat") and spec.params.get("base_url") is None and isinstance(model, str):
                aliases.add(model)
        return aliases

    def render(self, samples: Iterable[Sample]) -> dict[str, list[dict[str, str]]]:
        """Every sample's chat messages by sample id; the first sample that cannot be rendered is a
        ``TaskError`` naming the task, the sample, the template and the reason."""
        templates: list[tuple[str, str, jinja2.Template]]
        if self.messages is not None:
            templates = [(f"messages[{i}]", m.role, _compile(m.content)) for i, m in enumerate(self.messages)]
        elif self.prompt is not None:
            templates = [("prompt", "user", _compile(self.prompt))]
        else:
            templates = []
        rendered: dict[str, list[dict[str, str]]] = {}
        for sample in samples:
            where = f"task {self.name!r}: sample {sample.id!r}"
            if not templates:
                if isinstance(sample.input, str):
                    rendered[sample.id] = [{"role": "user", "content": sample.input}]
                elif isinstance(sample.input, list):
                    rendered[sample.id] = [m.model_dump() for m in sample.input]
                else:
                    raise TaskError(f"{where}: the input is an object of fields; give the task a prompt or messages")
                continue
            fields = sample.input if isinstance(sample.input, dict) else {}
            context: dict[str, Any] = {
                **fields,
                "sample": {
                    "id": sample.id,
                    "input": sample.model_dump(mode="json")["input"],
                    "metadata": sample.metadata,
                },
            }
            messages = []
            for label, role, template in templates:
                try:
                    content = template.render(context)
                except jinja2.TemplateError as exc:
                    known = ", ".join(sorted(fields)) or "none"
                    raise TaskError(f"{where}: {label}: {exc.message} (input fields: {known})") from None
                messages.append({"role": role, "content": content})
            rendered[sample.id] = messages
        return rendered


def _stable_repr(value: object) -> str:
    """JSON fallback for scorer parameters given from Python (e.g. an embed function): its qualified name."""
    qualname = getattr(value, "__qualname__", None)
    module = getattr(value, "__module__", None)
    return f"{module}.{qualname}" if isinstance(qualname, str) else repr(value)


def _prefixed(made: Scorer, prefix: str) -> Scorer:
    async def score(sample: Any, output: Any) -> Scores | Scored:
        result = made(sample, output)
        values = await result if inspect.isawaitable(result) else result
        if isinstance(values, Scored):
            return Scored({f"{prefix}{metric}": v for metric, v in values.scores.items()}, values.details)
        return {f"{prefix}{metric}": value for metric, value in values.items()}

    return score


def _field_path(loc: tuple[int | str, ...]) -> str:
    # pydantic puts the union member's name in the location (``dataset.str``); it says nothing to a reader
    parts = [str(p) for p in loc if p not in ("str", "Dataset", *TARGET_TAGS)]
    return ".".join(parts) or "(top level)"


def parse_task(raw: Any, source: str, base_dir: Path | None = None) -> Task:
    """Validate a parsed task document; errors are one line naming ``source``, the fields and the reasons."""
    if not isinstance(raw, Mapping):
        kind = "an empty file" if raw is None else type(raw).__name__
        raise TaskError(f"{source}: (top level): expected a mapping with name, dataset, target and scorers, got {kind}")
    if "base_dir" in raw:
        raise TaskError(f"{source}: invalid task: base_dir: not a task field (dataset paths start at the task file)")
    if "dataset" in raw and not isinstance(raw["dataset"], str):
        raise TaskError(f"{source}: invalid task: dataset: expected a path or a built-in dataset name")
    try:
        return Task.model_validate({**raw, "base_dir": base_dir})
    except ValidationError as exc:
        reasons = [f"{_field_path(e['loc'])}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()]
        raise TaskError(f"{source}: invalid task: " + "; ".join(reasons)) from None


def builtin_suites() -> list[str]:
    """The names of the suites shipped with goldenpath (``builtin:NAME``)."""
    return sorted(path.stem for path in SUITES_DIR.glob("*.yaml"))


def load_task(path: str | Path) -> Task:
    """A task from a YAML file, or ``builtin:NAME`` for a shipped suite; relative paths in it (dataset,
    in-process gateway config) start at the file's folder."""
    if isinstance(path, str) and path.startswith(BUILTIN_PREFIX):
        name = path.removeprefix(BUILTIN_PREFIX)
        if name not in builtin_suites():
            raise TaskError(f"unknown suite {path!r} (built in: {', '.join(builtin_suites())})")
        path = SUITES_DIR / f"{name}.yaml"
    path = Path(path)
    try:
        raw = read_yaml(path, "task file")
    except ValueError as exc:
        raise TaskError(str(exc)) from None
    return parse_task(raw, str(path), base_dir=path.resolve().parent)


def task(factory: _TaskFactory) -> _TaskFactory:
    """Register a function returning a ``Task`` under the function's name (``create_task`` calls it)."""
    name = factory.__name__
    if _REGISTRY.get(name, factory) is not factory:
        raise ValueError(f"a different task is already registered as {name!r}")
    _REGISTRY[name] = factory
    return factory


def registered_tasks() -> list[str]:
    return sorted(_REGISTRY)


def create_task(name: str, /, **params: Any) -> Task:
    """The task registered as ``name``, made with ``params``."""
    if name not in _REGISTRY:
        raise TaskError(f"unknown task {name!r} (known: {', '.join(registered_tasks()) or 'none'})")
    try:
        made = _REGISTRY[name](**params)
    except (TypeError, ValidationError) as exc:
        raise TaskError(f"task {name!r}: {exc}") from None
    if not isinstance(made, Task):
        raise TaskError(f"task {name!r}: the registered function returned {type(made).__name__}, not a Task")
    return made
