"""Schema fuzzing: schemathesis generates requests from the app's own OpenAPI schema,
valid ones and invalid ones, against the real study's database; no answer may be
a 5xx, and every answer must match what the schema documents for it (status code,
content type, body)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402

EXAMPLES = 25  # per operation and generation mode


@pytest.fixture(scope="module")
def api_schema(real_db: Path) -> Any:
    from tuner.service.app import create_app
    from tuner.service.db import open_readonly

    # Schemathesis names its own Host; the loopback Host check has its own tests.
    app = create_app(open_readonly(str(real_db)), loopback_only=False)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_no_server_error_and_the_schema_holds(api_schema: Any, mode: str) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 18
    failures = []
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=schemathesis.GenerationMode(mode)))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: Any) -> None:
            response = case.call()
            assert response.status_code < 500, (case.formatted_path, case.query, response.text[:300])
            case.validate_response(response)

        try:
            check()
        except Unsatisfiable:
            assert mode == "negative"  # an operation without parameters has no invalid request
        except Exception as exc:  # every operation is fuzzed; all failures are reported together
            failures.append(f"{operation.label}: {exc}")
    assert failures == []
