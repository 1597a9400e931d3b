"""The pure rules: request parsing, retry decisions, dependency verdicts, admission."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from genobatch.batch import ClientException, ExitReason, JobStatus
from genobatch.batch.admission import Candidate, Pool, QueueStream, admit, why_waiting
from genobatch.batch.lifecycle import (
    array_parent_status,
    outcome_for,
    resolve_dependencies,
    should_retry,
)
from genobatch.batch.model import (
    STATUS_REASON_OOM,
    JobDefinition,
    Resources,
    RetryStrategy,
    substitute_parameters,
)


def test_retry_strategy_parses_aws_shape() -> None:
    strategy = RetryStrategy.parse(
        {
            "attempts": 3,
            "evaluateOnExit": [{"onExitCode": "1*", "action": "exit"}, {"onReason": "*", "action": "RETRY"}],
        }
    )
    assert strategy.attempts == 3
    assert [r.action for r in strategy.rules] == ["EXIT", "RETRY"]


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"attempts": 0}, "from 1 to 10"),
        ({"attempts": 11}, "from 1 to 10"),
        ({"attempts": 2, "evaluateOnExit": [{"action": "MAYBE", "onExitCode": "1"}]}, "RETRY or EXIT"),
        ({"attempts": 2, "evaluateOnExit": [{"action": "EXIT", "onExitCode": "1*2"}]}, "only end the pattern"),
        ({"attempts": 2, "evaluateOnExit": [{"action": "EXIT", "onExitCode": "abc"}]}, "only digits"),
        ({"attempts": 2, "evaluateOnExit": [{"action": "EXIT"}]}, "at least one of"),
        ({"attempts": 2, "evaluateOnExit": [{"action": "EXIT", "onReason": "x"}] * 6}, "at most 5"),
    ],
)
def test_retry_strategy_rejects_bad_input(raw: dict, message: str) -> None:
    with pytest.raises(ClientException, match=message):
        RetryStrategy.parse(raw)


def test_first_matching_rule_decides_and_no_match_retries() -> None:
    strategy = RetryStrategy.parse(
        {
            "attempts": 3,
            "evaluateOnExit": [
                {"onExitCode": "3", "action": "EXIT"},
                {"onStatusReason": "Essential*", "action": "RETRY"},
            ],
        }
    )
    assert not should_retry(strategy, 1, outcome_for(ExitReason.FAILED, 3))
    assert should_retry(strategy, 1, outcome_for(ExitReason.FAILED, 4))
    assert not should_retry(strategy, 3, outcome_for(ExitReason.FAILED, 4)), "attempts exhausted"
    only_exit_rules = RetryStrategy.parse({"attempts": 2, "evaluateOnExit": [{"onExitCode": "9", "action": "EXIT"}]})
    assert should_retry(only_exit_rules, 1, outcome_for(ExitReason.LOST, None)), "no rule matched: AWS retries"


def test_on_reason_matches_the_out_of_memory_reason() -> None:
    strategy = RetryStrategy.parse(
        {"attempts": 5, "evaluateOnExit": [{"onReason": "OutOfMemoryError*", "action": "EXIT"}]}
    )
    oom = outcome_for(ExitReason.MEMLIMIT, 137, "used 80 MiB, limit 64 MiB")
    assert oom.container_reason is not None and oom.container_reason.startswith(STATUS_REASON_OOM)
    assert not should_retry(strategy, 1, oom)
    assert should_retry(strategy, 1, outcome_for(ExitReason.KILLED, 137, "SIGKILL"))


def test_timeouts_and_terminations_are_never_retried_as_on_aws() -> None:
    strategy = RetryStrategy.parse({"attempts": 5})
    assert not should_retry(strategy, 1, outcome_for(ExitReason.TIMEOUT, 143))
    assert not should_retry(strategy, 1, outcome_for(ExitReason.TERMINATED, 143, "user asked"))


def test_dependency_verdicts() -> None:
    assert resolve_dependencies([]).status is JobStatus.RUNNABLE
    assert resolve_dependencies([("a", JobStatus.SUCCEEDED), ("b", JobStatus.RUNNING)]).status is JobStatus.PENDING
    failed = resolve_dependencies([("a", JobStatus.SUCCEEDED), ("b", JobStatus.FAILED)])
    assert failed.status is JobStatus.FAILED and failed.reason is not None and "b" in failed.reason


def test_array_parent_ends_only_when_all_children_have() -> None:
    assert array_parent_status({JobStatus.SUCCEEDED: 2, JobStatus.RUNNING: 1}, 3) is None
    assert array_parent_status({JobStatus.SUCCEEDED: 3}, 3) is JobStatus.SUCCEEDED
    assert array_parent_status({JobStatus.SUCCEEDED: 2, JobStatus.FAILED: 1}, 3) is JobStatus.FAILED


def test_parameters_fill_ref_placeholders_and_leave_unknown_ones() -> None:
    command = ["tool", "--in", "Ref::input", "x=Ref::input", "Ref::missing"]
    assert substitute_parameters(command, {"input": "a.fq"}) == ["tool", "--in", "a.fq", "x=a.fq", "Ref::missing"]


def test_job_definition_reads_resource_requirements() -> None:
    definition = JobDefinition.parse(
        {
            "jobDefinitionName": "d",
            "containerProperties": {
                "command": ["true"],
                "resourceRequirements": [{"type": "VCPU", "value": "2"}, {"type": "MEMORY", "value": "512"}],
            },
        },
        1,
    )
    assert definition.resources == Resources(2.0, 512)
    with pytest.raises(ClientException, match="command must be a non-empty list"):
        JobDefinition.parse({"jobDefinitionName": "d", "containerProperties": {"command": "echo hi"}}, 1)


def _stream(*jobs: tuple[str, float, int], priority: int = 1, pools: tuple[str, ...] = ("local",)) -> QueueStream:
    """A queue holding (job id, vCPUs, runnable since ms) jobs, in that submission order."""
    seq = iter(range(1, 1000))
    cands = [
        Candidate(job_id, next(seq) + 100 * priority, Resources(vcpus, 10), since) for job_id, vcpus, since in jobs
    ]
    return QueueStream(priority, pools, iter(cands))


def test_admission_respects_capacity_and_backfills() -> None:
    pools = {"local": Pool("local", Resources(4, 100))}
    placed = admit([_stream(("a", 3, 0), ("big", 2, 0), ("small", 1, 0))], pools, now_ms=0, starvation_ms=10_000)
    assert [c.job_id for c, _ in placed] == ["a", "small"], "the 2-vCPU job does not fit; the 1-vCPU one backfills"
    assert pools["local"].free.vcpus == 0


def test_higher_priority_queue_goes_first() -> None:
    pools = {"local": Pool("local", Resources(2, 100))}
    low = _stream(("low1", 1, 0), ("low2", 1, 0), priority=1)
    high = _stream(("high1", 1, 0), ("high2", 1, 0), ("high3", 1, 0), priority=10)
    placed = admit([low, high], pools, now_ms=0, starvation_ms=10_000)
    assert [c.job_id for c, _ in placed] == ["high1", "high2"]


def test_a_queue_whose_pools_are_full_is_not_read_further() -> None:
    pools = {"busy": Pool("busy", Resources(1, 100)), "idle": Pool("idle", Resources(8, 100))}
    consumed: list[str] = []

    def jobs() -> Iterator[Candidate]:
        for i in range(10_000):
            consumed.append(f"j{i}")
            yield Candidate(f"j{i}", i, Resources(1, 10), 0)

    placed = admit([QueueStream(1, ("busy",), jobs())], pools, now_ms=0, starvation_ms=10_000)
    assert len(placed) == 1 and len(consumed) == 2, "stops as soon as the queue's only pool is full"


def test_backfill_depth_bounds_the_scan() -> None:
    pools = {"local": Pool("local", Resources(2, 100), used_vcpus=1)}
    big = [(f"big{i}", 2.0, 0) for i in range(500)]
    placed = admit([_stream(*big, ("small", 1, 0))], pools, now_ms=0, starvation_ms=10**9, backfill_depth=50)
    assert placed == [], "the small job lies deeper than the backfill depth"
    placed = admit([_stream(*big[:10], ("small", 1, 0))], pools, now_ms=0, starvation_ms=10**9, backfill_depth=50)
    assert [c.job_id for c, _ in placed] == ["small"]


def test_a_starving_job_stops_backfill() -> None:
    pools = {"local": Pool("local", Resources(4, 100), used_vcpus=3)}
    placed = admit([_stream(("big", 2, 0), ("small", 1, 50_000))], pools, now_ms=60_000, starvation_ms=30_000)
    assert placed == [], "the big job waited past the limit, so capacity drains for it"


def test_why_waiting_names_the_shortfall() -> None:
    pool = Pool("local", Resources(2, 1000), used_vcpus=1)
    reason = why_waiting(Resources(2, 100), [pool], jobs_ahead=0)
    assert "needs 2 vCPU" in reason and "local has 1 of 2 vCPU" in reason
