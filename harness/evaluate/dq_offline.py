"""`custom_dataset` loader of dqbench's offline overrides of lm-eval tasks (copied beside the override YAMLs,
where lm-eval resolves `!function dq_offline.load`; harness/evaluate/lmeval_worker.py renders them).

lm-eval calls `custom_dataset(**metadata, **dataset_kwargs)`. `data_files` maps each split to an Arrow file
(harness/evaluate/lmeval_data.py); `empty_splits` are splits no registry package carries (train): they are
given with 0 rows, so lm-eval's own config (training_split: train) builds unchanged, 0-shot requests are
identical, and a k-shot request that would sample them fails loudly instead of drawing shots elsewhere.
"""

import datasets


def load(data_files: dict, empty_splits: list | None = None, **_ignored) -> datasets.DatasetDict:
    # in_memory: a task's process_docs map (hellaswag) must not write cache-*.arrow into the shared data folder
    out = {s: datasets.Dataset.from_file(f, in_memory=True) for s, f in data_files.items()}
    feats = next(iter(out.values())).features
    for s in empty_splits or []:
        out[s] = datasets.Dataset.from_dict({k: [] for k in feats}, features=feats)
    return datasets.DatasetDict(out)
