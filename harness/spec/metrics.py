"""Which metric of each task is its headline accuracy, and which metrics are better lower.
Pure constants: the advisor, the dashboard and the shift analysis read the same definitions."""

PRIMARY = {
    "dq_arc_easy": "acc",
    "dq_hellaswag": "acc_norm",
    "dq_lambada": "acc",
    "dq_niah": "acc",  # each length's task too (`dq_niah@4096`: harness/spec/context_lengths.py)
    # lm-eval's own tasks: the metric published tables (Open LLM Leaderboard v1, llm-compressor's recovery
    # tables) report. Any other registry task: its catalog entry's accuracy (harness/evaluate/catalog.py).
    "arc_easy": "acc_norm",
    "arc_challenge": "acc_norm",
    "hellaswag": "acc_norm",
    "openbookqa": "acc_norm",
    "piqa": "acc_norm",
    "winogrande": "acc",
    "boolq": "acc",
    "mmlu": "acc",
    "lambada_openai": "acc",
    "gsm8k": "exact_match,strict-match",
    "gsm8k_cot": "exact_match,strict-match",
    "gsm8k_cot_llama": "exact_match,strict-match",
}
LOWER_IS_BETTER = ("perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte")
AGGREGATE = "avg_acc"  # mean over tasks of PRIMARY
