"""A test plugin that gives `polyjobs start --otel` an OpenTelemetry SDK writing every finished
span as a JSON line to $POLYJOBS_TEST_SPANS (loaded with POLYJOBS_PLUGINS)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult


class FileExporter(SpanExporter):
    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(self.path, "a", encoding="utf-8") as out:
            for span in spans:
                parent = span.parent
                record = {
                    "name": span.name,
                    "trace_id": format(span.context.trace_id, "032x"),
                    "span_id": format(span.context.span_id, "016x"),
                    "parent_id": None if parent is None else format(parent.span_id, "016x"),
                    "kind": span.kind.name,
                    "attributes": dict(span.attributes or {}),
                }
                out.write(json.dumps(record) + "\n")
        return SpanExportResult.SUCCESS


_path = os.environ.get("POLYJOBS_TEST_SPANS")
if _path:
    _provider = TracerProvider()
    _provider.add_span_processor(SimpleSpanProcessor(FileExporter(_path)))
    trace.set_tracer_provider(_provider)
