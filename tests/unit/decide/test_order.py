"""The seeded item order (harness/decide/order.py): a permutation of the population, the same everywhere, a
task's `limit` as its first documents, a group's (subtask, document) pairs shuffled together."""

from __future__ import annotations

from collections import Counter

from harness.decide.order import item_key, parse_item_key, task_order


def test_a_task_order_is_a_seeded_permutation_of_its_documents():
    a = task_order("arc_easy", [("arc_easy", 500)], seed=0)
    assert sorted(d for _, d in a) == list(range(500)) and all(s is None for s, _ in a)
    assert a == task_order("arc_easy", [("arc_easy", 500)], seed=0)  # the same in every run and process
    assert a != task_order("arc_easy", [("arc_easy", 500)], seed=1)
    assert a[:20] != [(None, i) for i in range(20)]  # not the first documents
    # each task has its own order under one seed (a round does not pair document i of every task)
    assert [d for _, d in task_order("other", [("other", 500)], seed=0)] != [d for _, d in a]


def test_limit_makes_the_first_documents_the_population():
    a = task_order("lambada_openai", [("lambada_openai", 5153)], seed=0, limit=2500)
    assert sorted(d for _, d in a) == list(range(2500))


def test_a_group_shuffles_its_subtasks_documents_together():
    leaves = [("mmlu_b", 30), ("mmlu_a", 10)]
    o = task_order("mmlu", leaves, seed=3)
    assert len(o) == 40 and len(set(o)) == 40
    assert Counter(s for s, _ in o) == {"mmlu_b": 30, "mmlu_a": 10}
    assert {s for s, _ in o[:10]} == {"mmlu_a", "mmlu_b"}  # interleaved, not subtask after subtask
    # the order does not depend on the order the subtasks are listed in
    assert o == task_order("mmlu", list(reversed(leaves)), seed=3)
    o2 = task_order("mmlu", leaves, seed=3, limit=5)
    assert Counter(s for s, _ in o2) == {"mmlu_b": 5, "mmlu_a": 5} and all(d < 5 for _, d in o2)


def test_item_keys_round_trip_with_the_results_keys():
    assert item_key((None, 7)) == 7 and item_key(("mmlu_a", 7)) == "mmlu_a:7"
    for k in [(None, 7), ("mmlu_a", 7), ("high_school:x", 3)]:
        assert parse_item_key(item_key(k)) == k
