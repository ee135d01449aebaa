import re

import pytest

from harness.contracts import contract_problems, members
from harness.errors import PlanError
from harness.registry import FAMILIES, PluginContractError, Registry, compressors, evaluators, servers


def test_lazy_resolution_and_did_you_mean():
    r = Registry("widget")
    r.register("json_dumps", "json:dumps")
    import json

    assert r.get("json_dumps") is json.dumps
    with pytest.raises(PlanError) as e:
        r.get("json_dump")
    assert "unknown widget 'json_dump'" in str(e.value) and "did you mean 'json_dumps'" in str(e.value)


def test_conflicting_registration_rejected():
    r = Registry("widget")
    r.register("a", "json:dumps")
    r.register("a", "json:dumps")  # same target: fine
    with pytest.raises(ValueError):
        r.register("a", "json:loads")


def test_every_registered_plugin_resolves_and_meets_its_contract():
    for reg in FAMILIES.values():
        assert reg.contract is not None, reg.family
        for name in reg.names():
            assert reg.get(name) is not None
            assert contract_problems(reg.get(name), reg.contract) == [], (reg.family, name)


def test_the_fake_plugins_meet_their_contracts():
    from tests.fakes.plugins import FakeEvaluator, FakeServer

    assert contract_problems(FakeServer, servers.contract) == []
    assert contract_problems(FakeEvaluator, evaluators.contract) == []


class NoCommandServer:  # what cell.py used to probe with getattr: an engine that never said how it starts
    engine = "broken"
    request_extras: dict = {}

    def __init__(self, spec, python, device):
        self.spec = spec

    def start(self, artefact, served_name, log_path, trust_remote_code=False):
        raise AssertionError("never started: refused when loaded")

    def scoring(self, handle, artefact):
        return {}

    inspect = "not a method"


def test_a_plugin_that_breaks_its_contract_is_refused_when_loaded_naming_what_it_lacks():
    r = Registry("server", servers.contract)
    r.register("broken", f"{__name__}:NoCommandServer")
    with pytest.raises(PluginContractError) as e:
        r.get("broken")
    msg = str(e.value)
    assert "server 'broken'" in msg and "ServerContract" in msg
    lacking = ("missing command", "missing env", "missing http_keepalive", "missing starts_slowly", "not a method")
    for what in lacking:
        assert what in msg
    assert "scoring" not in msg and not re.search(r"\bstart\b", msg)  # what it has is not named
    assert "broken" not in r._loaded  # a refused plugin is not cached as loaded


def test_an_abstract_compressor_is_refused():
    from harness.compress.base import Compressor

    class Half(Compressor):  # declares everything but implements no compress()
        kind = "half"
        precisions = ("int4",)

    assert contract_problems(Half, compressors.contract) == ["abstract, not implemented: compress"]


def test_every_family_declares_members():
    declared = {fam: set(members(reg.contract)) for fam, reg in FAMILIES.items()}
    assert {"command", "inspect", "scoring", "env", "request_extras", "http_keepalive", "start"} <= declared["server"]
    assert {"compress", "plan_problems", "kind", "precisions", "engines"} <= declared["compressor"]
    assert {"evaluate", "prepare", "plan_problems"} <= declared["evaluator"]
    assert {"build", "needs_generations", "plan_problems"} <= declared["distiller"]
    assert {"run", "preflight"} <= declared["executor"]
    assert {"resolve", "fingerprint", "prepare", "available", "arch"} <= declared["model_source"]


def test_compressor_contract():
    for name in compressors.names():
        c = compressors.get(name)
        assert c.kind == name and c.precisions and isinstance(c.needs_gpu, bool) and c.engines


def test_overrides_from_environment_string():
    from harness.registry import load_overrides

    load_overrides("evaluator.my_eval=tests.fakes.plugins:FakeEvaluator")
    try:
        from tests.fakes.plugins import FakeEvaluator

        assert evaluators.get("my_eval") is FakeEvaluator
    finally:
        evaluators._targets.pop("my_eval")
        evaluators._loaded.pop("my_eval", None)
    with pytest.raises(ValueError, match="FAMILY.NAME=module:attr"):
        load_overrides("nonsense")
    with pytest.raises(ValueError):
        load_overrides("planet.x=json:loads")
