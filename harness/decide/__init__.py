"""The matrix's `decide:` question, answered item by item: pure code shared by the plan, the evaluate worker, the
runner and the advisor (no I/O beyond the item journal, no heavy imports).

- confseq.py: the anytime-valid confidence sequence of a paired drop (Waudby-Smith & Ramdas 2024)
- order.py: the seeded order of each task's documents and the measure's item sequence
- sequential.py: pairing, the look schedule, stopping, replay, the projection of items that would decide
- journal.py: the per-item journal a later run continues from
- question.py: the measure against the evaluation, the plan's errors, the budget, the worker's SequentialSpec
- settled.py: whether a done cell's stored decision answers the current question
- priority.py: `--until-decided`'s exclusions, order, answer and bar (the predictions hook)
"""
