"""schemathesis against the app's OpenAPI, in process: generated requests never cause a server error (5xx).

Requests carry an admin token so they reach the handlers (the authorization matrix covers who may call
what); the data set-up gives the generated ids something to hit. Each operation gets its own hypothesis run
(schemathesis' strategies driven directly, since its lazy pytest fixture loader does not work with the
pytest in use), and every failure is collected before the test fails, so one run reports them all.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from coldtrace.core.clock import ManualClock
from coldtrace.services import auth
from tests.support.stack import start_stack

pytestmark = pytest.mark.integration
EXAMPLES = 10


@pytest.fixture
def stack(tmp_path):
    s = start_stack(tmp_path, None, clock=ManualClock(), with_collector=False)
    auth.create_user(s.services.db, "qa1", "Quinn Assurance", "qa-password-123", "qa")
    r = s.client.post("/api/v1/shipments", headers=s.headers, json={
        "reference": "SHP-1", "origin": "A", "destination": "B", "product": "P", "lot": "L"})
    assert r.status_code == 201
    yield s
    s.close()


def test_no_server_error(stack):
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", stack.client.app)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        op = result.ok()
        operations += 1

        @given(case=op.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case) -> None:
            case.call_and_validate(headers={**(case.headers or {}), **stack.headers}, checks=[not_a_server_error])

        try:
            run()
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then fail once
            failures.append(f"{op.method.upper()} {op.path}: {str(exc)[:600]}")
    assert operations >= 30
    assert not failures, "\n\n".join(failures)
