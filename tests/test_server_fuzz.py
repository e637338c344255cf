"""The operator API fuzzed from its own OpenAPI document (schemathesis): requests generated
from every route's schema, valid and not, with a credential; no answer is a server error,
and every answer is one the document declares, in the shape it declares."""

from __future__ import annotations

import os
import time

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.helpers import Server  # noqa: E402

pytestmark = pytest.mark.slow  # a server of its own

CALLS: list[tuple[str, int]] = []

EXAMPLES = int(os.environ.get("CIVAL_FUZZ_EXAMPLES", "30"))
DERANDOMIZE = "CIVAL_FUZZ_EXAMPLES" not in os.environ
"""The suite draws the same cases every run (a failure is a change, not luck);
CIVAL_FUZZ_EXAMPLES=N explores: N random cases per operation."""

RAW = {
    "name": "fuzzed",
    "master": {"initial_deposit": "10000"},
    "farms": [{"name": "trend", "type": "trend_following", "agents": [{"name": "gator", "strategy": "alligator"}]}],
    "data": {"source": "synthetic", "bars": 400, "seed": 3},
}


@pytest.fixture(scope="module")
def served(tmp_path_factory):  # type: ignore[no-untyped-def]
    unlimited = {"CIVAL_RATE_USER": "1000000/minute", "CIVAL_RATE_ADDRESS": "1000000/minute"}  # fuzz, not limits
    server = Server(tmp_path_factory.mktemp("fuzz"), env=unlimited)
    status, run = server.call("POST", "/runs", {"config": RAW})
    assert status == 201, run
    deadline = time.monotonic() + 60
    while server.call("GET", f"/runs/{run['id']}")[1]["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    yield server, run["id"]
    server.stop()


def test_no_request_makes_a_server_error_and_every_answer_is_declared(served):  # type: ignore[no-untyped-def]
    """Each operation of the document, examples drawn from its schema by hypothesis (the
    schemathesis pytest plugin is not used: it follows pytest's internals too closely)."""
    server, run_id = served
    api = schemathesis.openapi.from_url(server.url + "/openapi.json")
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    failures = []
    for result in api.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, derandomize=DERANDOMIZE, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case):  # type: ignore[no-untyped-def]
            if case.path_parameters and "run_id" in case.path_parameters and len(CALLS) % 2:
                case.path_parameters["run_id"] = run_id  # half the calls reach the real run
            if case.operation.path.endswith(("/stream", "/stop")):
                case.path_parameters["run_id"] = "no-such-run"  # a stream follows a run until it ends; keep the run
            response = case.call_and_validate(headers={"Authorization": f"Bearer {Server.TOKEN}"}, timeout=60, checks=checks)
            CALLS.append((case.operation.path, response.status_code))

        try:
            fuzz()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - every operation is fuzzed; the failures are listed together
            failures.append(f"{operation.method.upper()} {operation.path}: {exc!r}")
    assert not failures, "\n\n".join(failures)


def test_the_fuzzing_reached_every_route():
    from collections import Counter

    routes = Counter(path for path, _ in CALLS)
    statuses = Counter(status for _, status in CALLS)
    print(f"fuzzed {len(CALLS)} requests over {len(routes)} routes; answers {dict(sorted(statuses.items()))}")
    assert len(routes) >= 20 and len(CALLS) >= 200 and 500 not in statuses
    assert statuses[200] > 0 and statuses[422] > 0  # valid requests were generated, and invalid ones refused
