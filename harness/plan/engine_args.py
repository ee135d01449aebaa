"""Engine flags of a matrix (vLLM `engine_args`, llama.cpp `extra_args`) checked against the engine's own
options, at plan time.

vLLM parses its command line with argparse, which takes any unique prefix of an option as that option:
`{hos: 0.0.0.0}` reaches the server as --host, and a misspelt flag stops the server only once a cell is
being served. So each key is resolved with argparse's own rule against the option strings of the vLLM
build in the serving environment: an exact option is itself; otherwise the options it is a prefix of must
be exactly one. A key that resolves to an option dqbench sets itself (harness/spec/serving.py
VLLM_MANAGED, any spelling of that option), matches no option, or matches several is refused with the fix.

The option list comes from `make_arg_parser` run in the serving interpreter (vLLM is never imported
here) and is cached under DQBENCH_HOME/probe/, keyed like the host probe by the interpreter and its
installed packages. Building it imports vLLM (~15 s on 2 cores), so it is only asked for when a matrix
sets engine_args. When it cannot be read (no vLLM in that interpreter, the import fails), a matrix that sets
engine_args is refused with the reason: an option that cannot be resolved cannot be checked, and a check
skipped in silence is no check.

llama-server matches flags exactly, so abbreviations are no way in there; but one option has several
spellings (`--ui, --webui, --no-ui, --no-webui`), so its `--help` (well under a second) is read into
groups of spellings: a key whose group holds a managed flag (LLAMACPP_MANAGED) or that names no option is
refused. Without the binary built by the set-up, a matrix that sets extra_args is refused the same way.

Once resolved, an option that loads code, opens a connection or touches files needs the command line's
`--allow-engine-arg NAME` (harness/plan/trust.py): the resolved option is what is judged, under any spelling.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import tempfile
from pathlib import Path

from harness.plan.trust import RISKY_LLAMACPP, RISKY_VLLM, Grant, engine_arg_verdict, option_name
from harness.settings import REPO_ROOT, Settings
from harness.spec.serving import LLAMACPP_MANAGED, VLLM_MANAGED

OPTIONS_VERSION = 1  # bump when the cached document changes shape

# Run in the serving interpreter: every option string of `python -m vllm.entrypoints.openai.api_server`
# -> its argparse dest. The launcher module moved in vLLM 0.11+; older builds keep it under openai/.
_DUMP = """
import json, sys
try:
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
except ImportError:
    from vllm.entrypoints.openai.cli_args import make_arg_parser
try:
    from vllm.utils.argparse_utils import FlexibleArgumentParser
except ImportError:
    from vllm.utils import FlexibleArgumentParser
p = make_arg_parser(FlexibleArgumentParser())
with open(sys.argv[1], "w") as f:
    json.dump({o: a.dest for a in p._actions for o in a.option_strings}, f)
"""


def resolve(flag: str, options: dict[str, str]) -> tuple[str | None, list[str]]:
    """argparse's rule for a long option: (the option `flag` stands for, or None; the candidates)."""
    if flag in options:
        return flag, [flag]
    hits = sorted(o for o in options if o.startswith("--") and o.startswith(flag))
    return (hits[0] if len(hits) == 1 else None), hits


def vllm_arg_problems(
    engine_args: dict,
    options: dict[str, str],
    field: str = "serving.engine_args",
    grant: Grant | None = None,
    granted: list[str] | None = None,
) -> list[str]:
    """Why each engine_args key cannot be passed to vLLM (empty: all can). An option that needs an opt-in
    (harness/plan/trust.py) is a problem unless `grant` allows it; then its line is appended to `granted`."""
    grant = grant or Grant()
    managed = {options["--" + m] for m in VLLM_MANAGED if "--" + m in options}
    problems = []
    for key in sorted(engine_args):
        # the command line is built as --KEY with underscores as dashes (harness/serve/vllm.py); a dotted key
        # sets one field of a JSON option (--compilation-config.mode 3), a trailing + appends to a list
        flag = "--" + key.replace("_", "-").lstrip("-").split(".", 1)[0].rstrip("+")
        option, hits = resolve(flag, options)
        if option is None and not hits:
            problems.append(
                f"{field}.{key}: vLLM has no option {flag}; check the spelling against "
                f"`vllm serve --help=all` (or remove it)"
            )
        elif option is None:
            problems.append(
                f"{field}.{key}: {flag} is ambiguous in vLLM (it abbreviates {', '.join(hits[:6])}"
                f"{' ...' if len(hits) > 6 else ''}); write the option in full"
            )
        elif options[option] in managed:
            problems.append(
                f"{field}.{key}: vLLM reads it as {option}, set by dqbench itself; use the serving "
                f"fields instead (managed: {', '.join(sorted(VLLM_MANAGED))})"
            )
        elif option != flag:
            problems.append(
                f"{field}.{key}: abbreviates {option}; write the option in full "
                f"(`{option[2:].replace('-', '_')}`), so the cell id names what was set"
            )
        else:
            # every spelling of the option (its --no- form shares the dest), the one written first
            names = [option, *sorted(o for o, d in options.items() if d == options[option] and o != option)]
            problem, line = engine_arg_verdict(field, key, names, RISKY_VLLM, grant)
            if problem is None and line is None and "inductor_passes" in f"{key} {engine_args[key]}":
                # compilation_config's inductor_passes name functions to import (pass name -> qualified name)
                problem, line = engine_arg_verdict(field, key, [option], {option_name(option): "code"}, grant)
            if problem:
                problems.append(problem)
            elif line and granted is not None:
                granted.append(line)
    return problems


def _installed(python: Path) -> str:
    from harness.hw.probe import _installed as installed

    return installed(python)


def vllm_options(settings: Settings, timeout: float = 300) -> dict[str, str] | None:
    """vLLM's option strings -> dest, from the serving interpreter (cached); None if it has no vLLM."""
    return read_vllm_options(settings, timeout)[0]


def read_vllm_options(settings: Settings, timeout: float = 300) -> tuple[dict[str, str] | None, str]:
    """(vLLM's option strings -> dest, or None; why not, when None): the list from the serving interpreter,
    cached."""
    py = Path(settings.python)
    key = hashlib.sha256(f"{OPTIONS_VERSION}\n{py}\n{_installed(py)}".encode()).hexdigest()[:16]
    cache = settings.home / "probe" / f"vllm-options-{key}.json"
    try:
        doc = json.loads(cache.read_text())
        if isinstance(doc, dict) and doc:
            return doc, ""
    except (OSError, ValueError):
        pass  # absent or unreadable: asked again
    with tempfile.TemporaryDirectory(prefix="dq-vllm-opts-") as tmp:
        out = Path(tmp) / "options.json"
        from harness.proc import child_env

        env = child_env({"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"})
        try:
            r = subprocess.run(
                [str(py), "-c", _DUMP, str(out)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=env,
                cwd=REPO_ROOT,
                timeout=timeout,
                text=True,
                errors="replace",
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"{py} could not list vLLM's options ({type(exc).__name__}: {exc})"
        if r.returncode != 0 or not out.is_file():
            last = (r.stderr or "").strip().splitlines()[-1:] or ["no output"]
            return None, f"{py} could not list vLLM's options (exit code {r.returncode}: {last[0][:300]})"
        doc = json.loads(out.read_text())
    from harness.proc import write_json_atomic

    write_json_atomic(cache, doc)
    return doc, ""


def parse_llamacpp_help(text: str) -> list[frozenset[str]]:
    """llama-server --help -> one set of spellings per option (`-c, --ctx-size N  size of ...`)."""
    groups = []
    for line in text.splitlines():
        if not line.startswith("-"):
            continue
        # the spellings end where the description starts (two spaces); `-np,   --parallel N` pads after commas
        head = re.split(r"\s{2,}", re.sub(r",\s+", ", ", line), maxsplit=1)[0]
        flags = [part.split()[0] for part in head.split(", ") if part.startswith("-")]
        if flags:
            groups.append(frozenset(flags))
    return groups


def llamacpp_arg_problems(
    extra_args: dict,
    groups: list[frozenset[str]],
    field: str = "extra_serving[0].extra_args",
    grant: Grant | None = None,
    granted: list[str] | None = None,
) -> list[str]:
    """Why each extra_args key cannot be passed to llama-server (empty: all can). An option that needs an
    opt-in (harness/plan/trust.py) is a problem unless `grant` allows it; then its line goes to `granted`."""
    grant = grant or Grant()
    managed = {p + m for m in LLAMACPP_MANAGED for p in ("-", "--")}
    problems = []
    for key in sorted(extra_args):
        flag = "--" + key.replace("_", "-").lstrip("-")  # as harness/serve/llamacpp.py writes it
        group = next((g for g in groups if flag in g), None)
        if group is None:
            problems.append(
                f"{field}.{key}: llama-server has no option {flag}; check the spelling against "
                "`llama-server --help` (or remove it)"
            )
        elif group & managed:
            problems.append(
                f"{field}.{key}: {flag} is llama-server's {' / '.join(sorted(group))}, set by dqbench "
                f"itself; use the serving fields instead (managed: {', '.join(sorted(LLAMACPP_MANAGED))})"
            )
        else:
            names = [flag, *sorted(group - {flag}, key=lambda x: (-len(x), x))]
            problem, line = engine_arg_verdict(field, key, names, RISKY_LLAMACPP, grant)
            if problem:
                problems.append(problem)
            elif line and granted is not None:
                granted.append(line)
    return problems


def llamacpp_options(settings: Settings, timeout: float = 30) -> list[frozenset[str]] | None:
    """llama-server's option spellings, from the binary the set-up built; None without it."""
    return read_llamacpp_options(settings, timeout)[0]


def read_llamacpp_options(settings: Settings, timeout: float = 30) -> tuple[list[frozenset[str]] | None, str]:
    """(llama-server's option spellings, or None; why not, when None), from the binary the set-up built."""
    server = settings.llamacpp_dir / "build" / "bin" / "llama-server" if settings.llamacpp_dir else None
    if server is None or not server.is_file():
        return None, (
            f"llama-server is not built ({server or 'no llama.cpp folder: DQBENCH_LLAMACPP unset'}); "
            "`./dq setup` builds it"
        )
    try:
        r = subprocess.run(
            [str(server), "--help"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            errors="replace",
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"{server} --help failed ({type(exc).__name__}: {exc})"
    groups = parse_llamacpp_help(r.stdout + "\n" + r.stderr)
    return (groups, "") if groups else (None, f"{server} --help listed no options (exit code {r.returncode})")


def engine_arg_problems(
    servings, settings: Settings, grant: Grant | None = None, granted: list[str] | None = None
) -> list[str]:
    """Problems of every serving entry's engine flags ([] when there are none); options the command line
    allowed (`grant`) are appended to `granted`. An engine whose option list cannot be read is a problem
    when its entry sets flags: they cannot be checked."""
    problems = []
    for i, s in enumerate(servings):
        where = "serving" if i == 0 else f"extra_serving[{i - 1}]"
        if s.kind == "vllm" and s.engine_args:
            options, why = read_vllm_options(settings)
            if options is None:
                problems.append(
                    f"{where}.engine_args is set, but vLLM's options could not be read to check it: {why}; fix "
                    f"the serving environment (DQBENCH_STAGE_PYTHON) or remove engine_args"
                )
            else:
                problems += vllm_arg_problems(s.engine_args, options, f"{where}.engine_args", grant, granted)
        elif s.kind == "llamacpp" and s.extra_args:
            groups, why = read_llamacpp_options(settings)
            if groups is None:
                problems.append(
                    f"{where}.extra_args is set, but llama-server's options could not be read to check it: "
                    f"{why}; build it or remove extra_args"
                )
            else:
                problems += llamacpp_arg_problems(s.extra_args, groups, f"{where}.extra_args", grant, granted)
    return problems
