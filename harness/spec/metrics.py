"""Which metric of each dq_* task is its headline accuracy, and which metrics are better lower.
Pure constants: the advisor, the dashboard and the shift analysis read the same definitions."""

PRIMARY = {"dq_arc_easy": "acc", "dq_hellaswag": "acc_norm", "dq_lambada": "acc"}
LOWER_IS_BETTER = ("perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte")
AGGREGATE = "avg_acc"  # mean over tasks of PRIMARY
