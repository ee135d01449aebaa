"""Scoring of dqbench's needle-in-a-haystack task (`dq_niah@<length>`, harness/evaluate/niah.py): lm-eval's
`process_results`, copied beside the generated task YAMLs, where lm-eval resolves `!function niah_score.…`.

As RULER's single-needle `string_match_all`: 1 when the needle's value appears in the generated text (case-folded,
control characters dropped), else 0; the per-item score dqbench pairs against the reference. No imports."""


def process_results(doc: dict, results: list) -> dict:
    text = " ".join(str(r) for r in results)
    text = "".join(c if c >= " " else " " for c in text).lower()
    return {"acc": 1.0 if str(doc["value"]).lower() in text else 0.0}
