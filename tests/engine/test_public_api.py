"""The public surface is a decision: this test pins it."""

from __future__ import annotations

import inspect

import polyjobs
from polyjobs import hookspecs

PINNED = {
    "App",
    "Backend",
    "BackendError",
    "BackendUnavailableError",
    "Backoff",
    "ConfigError",
    "Deduplicated",
    "Deduplication",
    "Dependencies",
    "FlowProducer",
    "GroupRateLimitError",
    "InvalidArgumentError",
    "Job",
    "JobFailedError",
    "JobNode",
    "JobNotFoundError",
    "JobOptions",
    "JobRecord",
    "JobRef",
    "JobTimeoutError",
    "Keep",
    "PluginError",
    "PluginHost",
    "PolyjobsError",
    "Queue",
    "QueueSpec",
    "RateLimit",
    "RateLimitError",
    "Retention",
    "RetryAfter",
    "Runtime",
    "RuntimeContext",
    "ScheduleRecord",
    "ScheduleSpec",
    "UnknownBackendError",
    "UnrecoverableError",
    "WaitTimeoutError",
    "Worker",
    "WorkerInfo",
    "WorkerOptions",
    "__version__",
    "hookimpl",
    "open_backend",
    "run",
}


def test_all_is_pinned() -> None:
    assert set(polyjobs.__all__) == PINNED
    for name in polyjobs.__all__:
        assert hasattr(polyjobs, name), name


def test_every_error_derives_from_polyjobs_error() -> None:
    public = [getattr(polyjobs, name) for name in polyjobs.__all__]
    errors = [obj for obj in public if inspect.isclass(obj) and issubclass(obj, BaseException)]
    assert len(errors) >= 10
    for err in errors:
        assert issubclass(err, polyjobs.PolyjobsError), err


def test_every_hook_is_documented_with_its_return_contract() -> None:
    hooks = [
        (name, fn)
        for name, fn in vars(hookspecs).items()
        if name.startswith("polyjobs_") and callable(fn)
    ]
    assert {name for name, _ in hooks} >= {
        "polyjobs_backend_factories",
        "polyjobs_queue_specs",
        "polyjobs_resources",
        "polyjobs_job_event",
    }
    for name, fn in hooks:
        doc = inspect.getdoc(fn) or ""
        assert len(doc) > 60, f"{name} needs a docstring stating its contract"
        assert "Return" in doc, f"{name}'s docstring must state what it returns"


def test_no_module_imports_pickle() -> None:
    import pathlib

    root = pathlib.Path(polyjobs.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if "import pickle" in text or "from pickle" in text or "cPickle" in text:
            offenders.append(str(path))
    assert offenders == []
