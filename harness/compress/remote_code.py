"""`python -m harness.compress.remote_code SCRIPT ARGS...`: run a third-party Python script (llama.cpp's
`convert_hf_to_gguf.py`) with transformers' loading of repository code refused.

Why: llama.cpp's converter calls `AutoTokenizer.from_pretrained(..., trust_remote_code=True)` for several
vocabularies whatever the matrix says, so a repository's own Python (`auto_map` in its config) would run in the
conversion. The plan refuses such a repository unless the person running the matrix passed --trust-remote-code
(harness/plan/trust.py); this is the second wall, for the scripts dqbench does not write: every path by which
transformers imports a repository's module ends in `dynamic_module_utils.get_class_in_module`, which raises here.
The GGUF worker runs the converter through this unless the cell's model is `trust_remote_code: true`.

Runs in the serving environment (transformers is imported here, before the script).
"""

from __future__ import annotations

import runpy
import sys


class RemoteCodeRefused(RuntimeError):
    pass


def refuse_remote_code() -> None:
    """From now on, in this process, transformers raises instead of importing a repository's code."""
    import transformers.dynamic_module_utils as dmu

    def refuse(class_name: str, module_path: object, *args: object, **kwargs: object) -> type:
        raise RemoteCodeRefused(
            f"the checkpoint's repository code ({module_path}, class {class_name}) would run here; dqbench runs it "
            "only for a model with `trust_remote_code: true` and --trust-remote-code on the command line"
        )

    dmu.get_class_in_module = refuse


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        raise SystemExit("usage: python -m harness.compress.remote_code SCRIPT [ARGS...]")
    refuse_remote_code()
    sys.argv = argv
    runpy.run_path(argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
