"""load.workload: the four kinds, their validation, and that the default keeps old cells' ids."""

import pytest
from pydantic import ValidationError

from harness.spec.loadtest import LoadSpec
from harness.spec.workload import ChatWorkload, DistributionWorkload, FixedWorkload, SharedPrefixWorkload

PROFILES = [{"kind": "synchronous", "requests": 2}]


def load(**kw) -> LoadSpec:
    return LoadSpec(profiles=PROFILES, **kw)


def test_default_is_fixed_and_left_out_of_the_dump():
    spec = load()
    assert spec.workload == FixedWorkload()
    # a late field: cells planned before workloads existed keep their ids
    assert "workload" not in spec.model_dump()
    assert load(workload={"kind": "chat"}).model_dump()["workload"] == {"kind": "chat", "turns": 3, "system_tokens": 0}


def test_kinds_parse():
    assert isinstance(load(workload={"kind": "shared_prefix", "prefix_tokens": 64}).workload, SharedPrefixWorkload)
    assert isinstance(load(workload={"kind": "chat", "turns": 2}).workload, ChatWorkload)
    d = load(
        workload={
            "kind": "distribution",
            "input": {"shape": "uniform", "min": 8, "max": 64},
            "output": {"shape": "normal", "mean": 32, "stdev": 8, "min": 1, "max": 64},
        }
    ).workload
    assert isinstance(d, DistributionWorkload) and d.input.max == 64


def test_unknown_kind_and_fields_are_refused():
    with pytest.raises(ValidationError, match="shared_prefix"):
        load(workload={"kind": "prefix"})
    with pytest.raises(ValidationError, match="extra"):
        load(workload={"kind": "chat", "turn": 2})


def test_prefix_must_leave_room_for_a_suffix():
    with pytest.raises(ValidationError, match=r"prefix_tokens: got 128, but load.input_tokens is 128.*raise"):
        load(input_tokens=128, workload={"kind": "shared_prefix", "prefix_tokens": 128})
    assert load(input_tokens=129, workload={"kind": "shared_prefix", "prefix_tokens": 128})


@pytest.mark.parametrize(
    ("lengths", "match"),
    [
        ({"shape": "uniform", "min": 9, "max": 8}, "min 9 > max 8"),
        ({"shape": "normal", "min": 1, "max": 8}, "needs `mean` and `stdev`"),
        ({"shape": "normal", "mean": 20, "stdev": 1, "min": 1, "max": 8}, "outside"),
        ({"shape": "corpus", "mean": 4, "min": 1, "max": 8}, "takes no mean"),
        ({"shape": "uniform", "min": 0, "max": 8}, "greater than or equal to 1"),
    ],
)
def test_lengths_are_checked(lengths, match):
    with pytest.raises(ValidationError, match=match):
        load(workload={"kind": "distribution", "input": lengths, "output": {"shape": "uniform", "min": 1, "max": 2}})


def test_longest_request_for_the_plans_context_check():
    assert FixedWorkload().longest(100, 20) == (100, 20)
    # the last of 3 turns carries 3 user turns, 2 replies, a system message and the template per message
    chat = ChatWorkload(kind="chat", turns=3, system_tokens=10)
    assert chat.longest(100, 20) == (10 + 300 + 40 + 6 * chat.TEMPLATE_TOKENS_PER_MESSAGE, 20)
    d = load(
        workload={
            "kind": "distribution",
            "input": {"shape": "corpus", "min": 8, "max": 900},
            "output": {"shape": "uniform", "min": 1, "max": 50},
        }
    ).workload
    assert d.longest(1, 1) == (900, 50)


def test_the_plan_refuses_a_chat_whose_last_turn_overflows_the_context(base_matrix, settings):
    from harness.plan import plan_matrix
    from harness.spec import parse_matrix

    base_matrix["load"].update(input_tokens=200, output_tokens=64, workload={"kind": "chat", "turns": 8})
    # the 8th turn: 8 x 200 + 7 x 64 + 15 messages x 8 template tokens + 32 for a template's default system
    # prompt = 2200, + 64 output > max_model_len 2048
    plan = plan_matrix(parse_matrix(base_matrix), settings, host="cpu-avx512")
    vllm = [c for c in plan.cells if c.serving.kind == "vllm"]
    assert vllm and all(c.status == "infeasible" for c in vllm)
    assert any(
        r.startswith("the longest request of the chat workload, 2200 prompt + 64 output = 2264 tokens")
        for r in vllm[0].reasons
    ), vllm[0].reasons
    base_matrix["load"]["workload"]["turns"] = 7  # 1400 + 384 + 104 + 32 + 64 = 1984: fits
    plan = plan_matrix(parse_matrix(base_matrix), settings, host="cpu-avx512")
    assert not any("tokens per request" in r for c in plan.cells for r in c.reasons)
