"""The item journal (harness/decide/journal.py): a header that pins the settings, whole items only (a torn line
is dropped and cut), a journal of other settings set aside, a reference's read without touching it."""

from __future__ import annotations

import json

from harness.decide.journal import Journal, JournalHeader, journal_path, read_journal

H = JournalHeader.of("arc_easy", "0.4.13", {"task_hash": "abc", "num_fewshot": {"arc_easy": 0}})


def row(doc, acc=1.0, task=None):
    return {**({"task": task} if task else {}), "doc_id": doc, "target": 0, "filtered_resps": {}, "acc": acc}


def test_items_are_appended_once_and_read_back(tmp_path):
    j = Journal(tmp_path, H)
    assert j.rows == {} and j.discarded is None
    j.append([row(3), row(1, 0.0), row(5, task="sub")])
    j.append([row(3, 0.0)])  # already journaled: not again
    lines = journal_path(tmp_path, "arc_easy").read_text().splitlines()
    assert json.loads(lines[0])["pin"] == H.pin and len(lines) == 4
    again = Journal(tmp_path, H)
    assert set(again.rows) == {(None, 3), (None, 1), ("sub", 5)} and again.rows[(None, 3)]["acc"] == 1.0


def test_a_torn_last_line_is_dropped_and_cut_before_the_next_append(tmp_path):
    Journal(tmp_path, H).append([row(1), row(2)])
    path = journal_path(tmp_path, "arc_easy")
    with open(path, "a") as f:
        f.write('{"doc_id": 9, "ac')  # a crash in the middle of a write
    j = Journal(tmp_path, H)
    assert set(j.rows) == {(None, 1), (None, 2)}
    j.append([row(9)])
    assert set(Journal(tmp_path, H).rows) == {(None, 1), (None, 2), (None, 9)}
    assert all(json.loads(x) for x in path.read_text().splitlines())


def test_other_settings_set_the_journal_aside_and_start_afresh(tmp_path):
    Journal(tmp_path, H).append([row(1)])
    other = JournalHeader.of("arc_easy", "0.4.14", H.settings)  # another lm-eval version
    j = Journal(tmp_path, other)
    assert j.rows == {} and "other settings" in (j.discarded or "")
    assert (tmp_path / "arc_easy.discarded.jsonl").is_file()
    assert json.loads(journal_path(tmp_path, "arc_easy").read_text().splitlines()[0])["pin"] == other.pin


def test_a_reference_journal_is_read_only_when_its_pin_matches(tmp_path):
    Journal(tmp_path, H).append([row(1)])
    rows, why = read_journal(tmp_path, "arc_easy", H)
    assert set(rows) == {(None, 1)} and why is None
    before = journal_path(tmp_path, "arc_easy").read_bytes()
    other = JournalHeader.of("arc_easy", "0.4.13", {**H.settings, "task_hash": "changed"})
    rows, why = read_journal(tmp_path, "arc_easy", other)
    assert rows == {} and "other settings" in (why or "")
    assert journal_path(tmp_path, "arc_easy").read_bytes() == before  # never modified
    assert read_journal(tmp_path / "none", "arc_easy", H)[1].startswith("no item journal")
