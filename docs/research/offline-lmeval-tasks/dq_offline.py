"""custom_dataset loader for dqbench's offline overrides of lm-eval tasks (copied beside the YAMLs).

lm-eval calls custom_dataset(**metadata, **dataset_kwargs); we take `data_files` {split: arrow file} and
return a DatasetDict of memory-mapped Datasets (no copy into the HF cache). `empty_splits` lists splits
the packaged data lacks (e.g. ARC train): they are present but EMPTY, so lm-eval's own config
(training_split/fewshot_split: train) builds unchanged, 0-shot requests are identical, and a k-shot
request fails loudly ("Sample larger than population") instead of drawing shots from another split.
"""
import datasets


def load(data_files: dict, empty_splits: list | None = None, **_ignored) -> datasets.DatasetDict:
    # in_memory: process_docs maps (hellaswag) must not write cache-*.arrow into the shared data folder
    out = {s: datasets.Dataset.from_file(f, in_memory=True) for s, f in data_files.items()}
    feats = next(iter(out.values())).features
    for s in empty_splits or []:
        out[s] = datasets.Dataset.from_dict({k: [] for k in feats}, features=feats)
    return datasets.DatasetDict(out)
